//! Chaos against the real control plane: kube-apiserver and etcd stopped
//! (SIGSTOP) for 20 s, then killed and held down for 20 s, under two
//! operator replicas with leader election. Throughout, every replica answers
//! 200 on the JWKS route with the same keys; afterwards, writes resume.
//!
//! A test binary of its own: the other tests of a binary share its control
//! plane, and would see the outage.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::controlplane::Component;
use support::operator::{Operator, TestEnv, kids, same_answer};

const OUTAGE: Duration = Duration::from_secs(20);

/// Polls every replica for `how_long`: each must answer 200 with `expected`.
async fn serves_throughout(replicas: &[&Operator], path: &str, expected: &str, how_long: Duration) {
    let started = Instant::now();
    let mut polls = 0u32;
    while started.elapsed() < how_long {
        for (i, op) in replicas.iter().enumerate() {
            let (code, body) = op.get(path);
            assert_eq!(
                (code, body.as_str()),
                (200, expected),
                "replica {i} after {:?} of the outage",
                started.elapsed()
            );
        }
        polls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(polls >= 40, "only {polls} polls in {how_long:?}");
}

/// Asks for a manual rotation and waits until every replica serves a kid it
/// did not serve before: proof that the leader writes again.
async fn writes_resume(
    env: &TestEnv,
    replicas: &[&Operator],
    path: &str,
    before: &str,
    request: &str,
) {
    let started = Instant::now();
    let old = kids(before);
    // The API server may still be warming up: retry the request itself.
    loop {
        let patch = json!({"metadata": {"annotations": {"jwks.dev/rotate-requested-at": request}}});
        match env
            .policies()
            .patch("chaos", &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "the rotation request never went through: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    for (i, op) in replicas.iter().enumerate() {
        loop {
            let (code, body) = op.get(path);
            assert_eq!(code, 200, "replica {i}: {body}");
            if kids(&body).iter().any(|k| !old.contains(k)) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "replica {i}: no new key {:?} after the outage ended",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    eprintln!(
        "[chaos] {request}: a new key served by every replica {:?} after the outage",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jwks_is_served_through_apiserver_and_etcd_outages_and_writes_resume() {
    let env = TestEnv::new("chaos").await;
    env.create(
        "chaos",
        json!({"algorithm": "ES256", "publishAhead": "0s", "maxTokenTTL": "1h"}),
    )
    .await;
    let leader_args = |identity: &str| {
        vec![
            "--leader-elect".to_owned(),
            format!("--leader-elect-namespace={}", env.ns),
            format!("--leader-elect-lease-name={}", env.id.lease_name),
            "--leader-elect-lease-duration=4".to_owned(),
            format!("--identity={identity}"),
            format!("--namespace={}", env.ns),
        ]
    };
    let a = Operator::start(&env.id.kubeconfig, &leader_args("chaos-a"));
    let b = Operator::start(&env.id.kubeconfig, &leader_args("chaos-b"));
    let replicas = [&a, &b];
    let path = format!("/{}/chaos/.well-known/jwks.json", env.ns);
    let mut served = same_answer(&a, &b, &path, Duration::from_secs(30)).await;

    for (round, (component, kill)) in [
        (Component::ApiServer, false),
        (Component::ApiServer, true),
        (Component::Etcd, false),
        (Component::Etcd, true),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("{component:?} {}", if kill { "killed" } else { "stopped" });
        eprintln!("[chaos] {what} for {OUTAGE:?}");
        let outage = if kill {
            env.cp.kill_and_hold(component)
        } else {
            env.cp.pause(component)
        };
        serves_throughout(&replicas, &path, &served, OUTAGE).await;
        outage.resume();
        let ready = env
            .cp
            .wait_api_ready(Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", env.cp.log_tails(30)));
        eprintln!("[chaos] {what}: API server ready {ready:?} after the outage");
        writes_resume(&env, &replicas, &path, &served, &format!("round-{round}")).await;
        // Both replicas converge on the same set again.
        let deadline = Instant::now() + Duration::from_secs(30);
        served = loop {
            let (_, ja) = a.get(&path);
            let (_, jb) = b.get(&path);
            if ja == jb {
                break ja;
            }
            assert!(Instant::now() < deadline, "replicas disagree: {ja} / {jb}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
    }
}
