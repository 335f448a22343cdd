//! The reconciler against a mock API server: a `tower` service handed to
//! `kube::Client::new` that answers like kube-apiserver for the few objects
//! a reconcile touches, and records every request. The tests assert which
//! requests a reconcile makes; the real-control-plane tests in
//! `tests/controller*.rs` check the same behaviour end to end.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Mutex;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::runtime::events::Reporter as EventReporter;
use serde_json::{Value, json};

use super::*;
use crate::k8s::secret::secret_object;
use crate::problem::Failure;
use crate::store::testing::one_key_set;

const SECRETS: &str = "/api/v1/namespaces/ns/secrets";
const SECRET: &str = "/api/v1/namespaces/ns/secrets/p-jwks";
const STATUS: &str = "/apis/jwks.dev/v1alpha1/namespaces/ns/keyrotationpolicies/p/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

/// What the mock API server holds and has been asked.
#[derive(Default)]
struct Server {
    secret: Option<Value>,
    resource_version: u64,
    /// `METHOD path` of every request except Events, in order.
    requests: Vec<String>,
    /// Event reasons recorded.
    events: Vec<String>,
    /// The last status patched.
    status: Option<Value>,
    /// Another writer stores this Secret just before our next write.
    racing_writer: Option<Value>,
    /// Other Secrets (a policy's credentials), by path.
    others: BTreeMap<String, Value>,
}

impl Server {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn store(&mut self, mut secret: Value) -> Value {
        secret["metadata"]["resourceVersion"] = json!(self.next_version());
        self.secret = Some(secret.clone());
        secret
    }

    fn stored_version(&self) -> Option<String> {
        self.secret
            .as_ref()
            .and_then(|s| s["metadata"]["resourceVersion"].as_str().map(str::to_owned))
    }

    fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if path == EVENTS {
            self.events
                .push(body["reason"].as_str().unwrap_or("").to_owned());
            return (StatusCode::CREATED, body);
        }
        self.requests.push(format!("{method} {path}"));
        let is_write = matches!(*method, Method::POST | Method::PUT);
        if is_write && let Some(theirs) = self.racing_writer.take() {
            self.store(theirs);
        }
        match (method.clone(), path) {
            (Method::GET, SECRET) => match &self.secret {
                Some(s) => (StatusCode::OK, s.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            (Method::POST, SECRETS) if self.secret.is_some() => {
                status(StatusCode::CONFLICT, "AlreadyExists")
            }
            (Method::POST, SECRETS) => (StatusCode::CREATED, self.store(body)),
            (Method::PUT, SECRET) => {
                let expected = body["metadata"]["resourceVersion"].as_str();
                if expected.map(str::to_owned) != self.stored_version() {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                (StatusCode::OK, self.store(body))
            }
            (Method::PATCH, STATUS) => {
                self.status = Some(body["status"].clone());
                let mut policy = policy_json();
                policy["status"] = body["status"].clone();
                policy["metadata"]["resourceVersion"] = json!(self.next_version());
                (StatusCode::OK, policy)
            }
            (Method::GET, other) if self.others.contains_key(other) => {
                (StatusCode::OK, self.others[other].clone())
            }
            _ => status(StatusCode::NOT_FOUND, "NotFound"),
        }
    }
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": format!("mock: {reason}"), "reason": reason, "code": code.as_u16(),
    });
    (code, body)
}

fn policy_json() -> Value {
    json!({
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "KeyRotationPolicy",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "1", "generation": 1},
        "spec": {"algorithm": "ES256"},
    })
}

fn policy() -> Arc<KeyRotationPolicy> {
    Arc::new(serde_json::from_value(policy_json()).unwrap())
}

/// A reconciler context whose client talks to `server`.
fn context(server: &Arc<Mutex<Server>>) -> Arc<Context> {
    let server = server.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        let server = server.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect_bytes().await.unwrap_or_default();
            let (code, reply) =
                server
                    .lock()
                    .unwrap()
                    .handle(&parts.method, parts.uri.path(), &body);
            let reply = Body::from(serde_json::to_vec(&reply).unwrap());
            Ok::<_, Infallible>(Response::builder().status(code).body(reply).unwrap())
        }
    });
    let client = Client::new(service, "default");
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            EventReporter {
                controller: "jwks-operator".into(),
                instance: None,
            },
        ),
        client,
        metrics: Arc::new(Metrics::new()),
        public_base_url: None,
        propagation_grace: std::time::Duration::ZERO,
        last_good: Default::default(),
        secrets: Default::default(),
        decoder: Default::default(),
        writable: Arc::new({
            let gate = crate::k8s::leader::WriteGate::unelected();
            gate.set_leading(true);
            gate
        }),
        written: WrittenStatus::default(),
        failures: Default::default(),
        publish_verify_interval: std::time::Duration::from_secs(300),
        publications: Default::default(),
    })
}

/// The policy as the watch would deliver it after our status write.
fn with_status(server: &Arc<Mutex<Server>>) -> Arc<KeyRotationPolicy> {
    let mut policy = policy_json();
    policy["status"] = server
        .lock()
        .unwrap()
        .status
        .clone()
        .expect("status written");
    policy["metadata"]["resourceVersion"] = json!("2");
    Arc::new(serde_json::from_value(policy).unwrap())
}

fn requests(server: &Arc<Mutex<Server>>) -> Vec<String> {
    std::mem::take(&mut server.lock().unwrap().requests)
}

/// A Secret of ours whose data keys were all removed by hand.
fn our_secret_without_keys() -> Value {
    let encoded = layout::encode(&one_key_set(), 1).unwrap();
    let mut secret: Secret = secret_object(&policy(), &encoded, None);
    secret.data = Some(BTreeMap::new());
    serde_json::to_value(secret).unwrap()
}

#[tokio::test]
async fn a_new_policy_is_one_create_and_one_status_patch_and_then_nothing_is_written() {
    let server = Arc::new(Mutex::new(Server::default()));
    let ctx = context(&server);

    let action = reconcile(policy(), ctx.clone()).await.unwrap();
    assert_ne!(action, Action::await_change());
    assert_eq!(
        requests(&server),
        [
            format!("GET {SECRET}"),
            format!("POST {SECRETS}"),
            format!("PATCH {STATUS}")
        ]
    );
    assert!(
        server.lock().unwrap().events.contains(&"KeyCreated".into()),
        "{:?}",
        server.lock().unwrap().events
    );

    // Steady state: nothing is written, not even status, and nothing is
    // read either: the Secret the create returned is in the cache.
    for _ in 0..3 {
        reconcile(with_status(&server), ctx.clone()).await.unwrap();
        assert_eq!(requests(&server), Vec::<String>::new());
    }
}

#[tokio::test]
async fn a_write_conflict_re_reads_the_secret_and_retries_once() {
    let server = Arc::new(Mutex::new(Server::default()));
    // Another replica creates the Secret first, with no key set in it.
    server.lock().unwrap().racing_writer = Some(our_secret_without_keys());
    let ctx = context(&server);

    reconcile(policy(), ctx.clone()).await.unwrap();
    assert_eq!(
        requests(&server),
        [
            format!("GET {SECRET}"),
            format!("POST {SECRETS}"),
            format!("GET {SECRET}"),
            format!("PUT {SECRET}"),
            format!("PATCH {STATUS}"),
        ]
    );
    let text = ctx.metrics.encode();
    assert!(
        text.contains(
            "jwks_operator_reconcile_errors_total{namespace=\"ns\",name=\"p\",kind=\"conflict\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn status_is_patched_only_when_it_changes() {
    let server = Arc::new(Mutex::new(Server::default()));
    let ctx = context(&server);
    reconcile(policy(), ctx.clone()).await.unwrap();
    requests(&server);
    reconcile(with_status(&server), ctx.clone()).await.unwrap();
    assert_eq!(requests(&server), Vec::<String>::new());

    // A new generation of the spec changes observedGeneration: one patch.
    let mut edited = (*with_status(&server)).clone();
    edited.metadata.generation = Some(2);
    reconcile(Arc::new(edited), ctx.clone()).await.unwrap();
    assert_eq!(requests(&server), [format!("PATCH {STATUS}")]);
    let status = server.lock().unwrap().status.clone().unwrap();
    assert_eq!(status["observedGeneration"], 2);
}

#[tokio::test]
async fn a_corrupt_secret_is_never_written_and_is_reported_once() {
    let server = Arc::new(Mutex::new(Server::default()));
    let encoded = layout::encode(&one_key_set(), 1).unwrap();
    let mut secret: Secret = secret_object(&policy(), &encoded, None);
    let data = secret.data.as_mut().unwrap();
    data.insert(
        "lifecycle.json".into(),
        k8s_openapi::ByteString(b"not json".to_vec()),
    );
    let secret = serde_json::to_value(secret).unwrap();
    server.lock().unwrap().store(secret);
    let ctx = context(&server);

    let action = reconcile(policy(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RECHECK));
    assert_eq!(
        requests(&server),
        [format!("GET {SECRET}"), format!("PATCH {STATUS}")]
    );
    let status = server.lock().unwrap().status.clone().unwrap();
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(degraded["reason"], "CorruptKeySet");
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&"CorruptKeySet".into())
    );

    // Looked at again: the Secret as read is in the cache, and the
    // unchanged status is not re-sent.
    reconcile(with_status(&server), ctx.clone()).await.unwrap();
    assert_eq!(requests(&server), Vec::<String>::new());
}

fn api_error(code: u16) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure("refused", "Refused")
            .with_code(code)
            .boxed(),
    )
}

#[test]
fn errors_a_retry_will_not_fix_become_a_problem_named_after_the_operation() {
    let write = |code| Error::WriteSecret {
        namespace: "ns".into(),
        name: "p-jwks".into(),
        source: api_error(code),
    };
    let read = |code| Error::ReadSecret {
        namespace: "ns".into(),
        name: "p-jwks".into(),
        source: api_error(code),
    };
    // 403 (RBAC), 413/422 (too large, validation, an admission policy).
    for code in [403, 413, 422] {
        let problem = write(code).problem().expect("shown as Degraded");
        assert_eq!(problem.reason, "SecretWriteFailed", "{code}");
        assert!(
            problem.message.starts_with("writing Secret ns/p-jwks:"),
            "{}",
            problem.message
        );
        assert_eq!(read(code).problem().unwrap().reason, "SecretReadFailed");
    }
    // A conflict, throttling or an outage is only retried.
    for code in [409, 429, 500, 503] {
        assert!(write(code).problem().is_none(), "{code}");
    }
    let cm = Error::WriteConfigMap {
        namespace: "ns".into(),
        name: "pub".into(),
        source: api_error(422),
    };
    assert_eq!(cm.problem().unwrap().reason, "ConfigMapWriteFailed");
}

/// The serving index's watch has listed namespace `ns`, holding `secret`
/// (as the API server stores it) if given.
fn watch_listed(ctx: &Context, secret: Option<Value>) {
    let fresh = secret
        .map(|s| {
            let s: Secret = serde_json::from_value(s).unwrap();
            (("ns".to_owned(), s.name_any()), Arc::new(s))
        })
        .into_iter()
        .collect();
    ctx.secrets.listed(&Some("ns".to_owned()), &fresh);
}

#[tokio::test]
async fn with_the_watch_listed_a_reconcile_never_gets_its_secret_and_decodes_a_version_once() {
    let server = Arc::new(Mutex::new(Server::default()));
    let ctx = context(&server);
    watch_listed(&ctx, None);

    // New: the watch has listed and not seen it, so no GET to learn of a 404.
    reconcile(policy(), ctx.clone()).await.unwrap();
    assert_eq!(
        requests(&server),
        [format!("POST {SECRETS}"), format!("PATCH {STATUS}")]
    );
    // The watch delivers the Secret.
    let stored = server.lock().unwrap().secret.clone();
    watch_listed(&ctx, stored);

    // Steady: no request at all, and the unchanged version is decoded once.
    let decodes = ctx.decoder.decodes();
    for _ in 0..3 {
        reconcile(with_status(&server), ctx.clone()).await.unwrap();
        assert_eq!(requests(&server), Vec::<String>::new());
    }
    assert!(
        ctx.decoder.decodes() - decodes <= 1,
        "{} decodes of one version",
        ctx.decoder.decodes() - decodes
    );
}

#[tokio::test]
async fn a_stale_cached_secret_never_overwrites_the_stored_one() {
    let server = Arc::new(Mutex::new(Server::default()));
    let ctx = context(&server);
    // The API server holds a key set; the cache still has an older version
    // of the Secret, emptied, say, before its keys were written back.
    let encoded = layout::encode(&one_key_set(), 1).unwrap();
    let stored = serde_json::to_value(secret_object(&policy(), &encoded, None)).unwrap();
    let stored = server.lock().unwrap().store(stored);
    let mut stale = our_secret_without_keys();
    stale["metadata"]["resourceVersion"] = json!("0");
    watch_listed(&ctx, Some(stale));

    reconcile(with_status_of(&stored), ctx.clone())
        .await
        .unwrap();
    // Planned from the stale copy: a write conditional on its version, a
    // conflict, a fresh read from the API, and planned again from that.
    let sent = requests(&server);
    assert_eq!(
        sent[..2],
        [format!("PUT {SECRET}"), format!("GET {SECRET}")]
    );
    assert_eq!(sent.last(), Some(&format!("PATCH {STATUS}")));
    let kids = |secret: &Value| -> Vec<String> {
        match crate::k8s::secret::decode(&serde_json::from_value(secret.clone()).unwrap()) {
            Ok(crate::store::layout::Decoded::Keys { set, .. }) => {
                set.keys.iter().map(|k| k.key.kid().to_owned()).collect()
            }
            _ => panic!("a key set"),
        }
    };
    let now = server.lock().unwrap().secret.clone().unwrap();
    let (before, after) = (kids(&stored), kids(&now));
    assert!(
        before.iter().all(|k| after.contains(k)),
        "keys of the stored set were lost: {before:?} -> {after:?}"
    );
    // What the API said is what the cache holds now.
    reconcile(with_status(&server), ctx.clone()).await.unwrap();
    assert_eq!(requests(&server), Vec::<String>::new());
}

#[tokio::test]
async fn a_foreign_secret_the_watch_cannot_see_is_never_overwritten() {
    let server = Arc::new(Mutex::new(Server::default()));
    let foreign = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "p-jwks", "namespace": "ns"},
        "data": {"password": "aHVudGVyMg=="},
    });
    server.lock().unwrap().store(foreign.clone());
    let ctx = context(&server);
    // The watch selects the operator's label: it never lists this one.
    watch_listed(&ctx, None);

    reconcile(policy(), ctx.clone()).await.unwrap();
    assert_eq!(
        requests(&server),
        [
            format!("POST {SECRETS}"),
            format!("GET {SECRET}"),
            format!("PATCH {STATUS}")
        ]
    );
    let status = server.lock().unwrap().status.clone().unwrap();
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Degraded" && c["reason"] == "SecretNotOwned"),
        "{status}"
    );
    let now = server.lock().unwrap().secret.clone().unwrap();
    assert_eq!(now["data"], foreign["data"]);
}

/// `policy()` with the status a previous pass wrote for `stored` (so the
/// pass knows the policy had keys).
fn with_status_of(stored: &Value) -> Arc<KeyRotationPolicy> {
    let set = crate::k8s::secret::decode(&serde_json::from_value(stored.clone()).unwrap());
    let Ok(crate::store::layout::Decoded::Keys { set, .. }) = set else {
        panic!("a key set");
    };
    let mut policy = policy_json();
    policy["status"] = json!({"activeKeyID": set.active().map(|k| k.key.kid().to_owned())});
    Arc::new(serde_json::from_value(policy).unwrap())
}

/// A PKCS#11 policy whose pinSecret its owner did not label: the PIN is
/// not read, the policy is `Degraded/SecretNotOptedIn` (with the label to
/// add) and an Event, and no key is generated into the Secret instead of
/// the token (nothing is written at all).
#[tokio::test]
async fn a_key_provider_whose_pin_secret_is_not_opted_in_generates_nothing() {
    let server = Arc::new(Mutex::new(Server::default()));
    server.lock().unwrap().others.insert(
        format!("{SECRETS}/pin"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pin", "namespace": "ns"},
            "data": {"pin": "MTIzNDU2Nzg="},
        }),
    );
    let ctx = context(&server);
    let mut json = policy_json();
    json["spec"]["keyProvider"] = json!({
        "type": "PKCS11",
        "module": "/usr/lib/softhsm/libsofthsm2.so",
        "tokenLabel": "t",
        "pinSecret": "pin",
    });
    let policy: Arc<KeyRotationPolicy> = Arc::new(serde_json::from_value(json).unwrap());
    reconcile(policy, ctx.clone()).await.unwrap();
    let requests = requests(&server);
    assert!(
        requests
            .iter()
            .all(|r| !r.starts_with("POST") && !r.starts_with("PUT")),
        "{requests:?}"
    );
    let status = server.lock().unwrap().status.clone().unwrap();
    assert!(!status.to_string().contains("12345678"), "{status}");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(
        degraded["reason"],
        reasons::SECRET_NOT_OPTED_IN,
        "{degraded}"
    );
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("Secret ns/pin (spec.keyProvider.pinSecret) is not opted in"),
        "{degraded}"
    );
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&reasons::SECRET_NOT_OPTED_IN.into())
    );
}

/// A `credentialsSecret` whose owner did not label it is never used: the
/// policy is `Degraded/SecretNotOptedIn` with a message that says exactly
/// which label to add, a Warning Event, nothing of the Secret's value
/// anywhere, and the first key signs (no copy holds back the first key).
/// Labelled, the same Secret is used (a missing key is then named).
#[tokio::test]
async fn a_credentials_secret_its_owner_did_not_opt_in_is_not_used() {
    const VALUE: &str = "credentialValueThatMustNeverShow0123";
    let creds_path = format!("{SECRETS}/creds");
    let creds = |labels: Value| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "ns", "labels": labels},
            "data": {"AWS_SECRET_ACCESS_KEY": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, VALUE)},
        })
    };
    let server = Arc::new(Mutex::new(Server::default()));
    server
        .lock()
        .unwrap()
        .others
        .insert(creds_path.clone(), creds(json!({})));
    let ctx = context(&server);
    let mut json = policy_json();
    json["spec"]["publish"] = json!([{"url": "s3://bucket-a/p", "credentialsSecret": "creds"}]);
    let policy: Arc<KeyRotationPolicy> = Arc::new(serde_json::from_value(json).unwrap());
    reconcile(policy.clone(), ctx.clone()).await.unwrap();

    let degraded = |server: &Arc<Mutex<Server>>| {
        let status = server.lock().unwrap().status.clone().unwrap();
        assert!(!status.to_string().contains(VALUE), "{status}");
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .unwrap()
            .clone()
    };
    let d = degraded(&server);
    assert_eq!(d["reason"], reasons::SECRET_NOT_OPTED_IN, "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("Secret ns/creds (spec.publish[0].credentialsSecret) is not opted in")
            && message.contains("kubectl label secret -n ns creds jwks.dev/credentials=true"),
        "{message}"
    );
    let status = server.lock().unwrap().status.clone().unwrap();
    assert!(
        status["activeKeyID"].is_string(),
        "the first key signs: {status}"
    );
    assert_eq!(
        status["publication"][0]["url"], "s3://bucket-a/p",
        "{status}"
    );
    assert!(
        status["publication"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not opted in"),
        "{status}"
    );
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&reasons::SECRET_NOT_OPTED_IN.into())
    );
    assert!(requests(&server).contains(&format!("GET {creds_path}")));

    // Opted in, the same Secret is read; a key it should not hold (a typo)
    // is named, its value is not.
    let mut labelled = creds(json!({"jwks.dev/credentials": "true"}));
    labelled["data"]["AWS_SECRET_ACCES_KEY"] = labelled["data"]["AWS_SECRET_ACCESS_KEY"].clone();
    server
        .lock()
        .unwrap()
        .others
        .insert(creds_path.clone(), labelled);
    reconcile(policy, ctx).await.unwrap();
    let d = degraded(&server);
    assert_eq!(d["reason"], reasons::REFERENCED_SECRET_UNUSABLE, "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("Secret ns/creds (spec.publish[0].credentialsSecret): unknown key \"AWS_SECRET_ACCES_KEY\""),
        "{d}"
    );
}
