//! The Helm chart (`charts/jwks-operator`), proven three ways:
//!
//! 1. Rendered (`helm lint --strict`, `helm template`) for the default values
//!    and every non-trivial combination, with assertions on the objects:
//!    least-privilege RBAC, restricted pod security, probes, the JWKS Service
//!    carrying only the JWKS port, the PDB only with replicas > 1; wrong
//!    values fail with the schema's message.
//! 2. Validated by the real API server (server-side dry-run, strict field
//!    validation, Pod Security admission at `restricted`).
//! 3. Installed, upgraded and uninstalled on the real control plane, and its
//!    ServiceAccount's permissions checked with SubjectAccessReviews: every
//!    verb the operator uses is allowed, nothing else is.
//!
//! No kubelet runs, so the chart's pods never start; the operator binary is
//! run as the chart's ServiceAccount by `operator_runs_as_the_charts_service_account`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource as _, ResourceExt as _};
use serde_json::{Value, json};
use support::controlplane::{ControlPlane, DumpOnFailure, apply_crd, control_plane};
use support::helm::{
    self, Release, chart_dir, install_chart, install_chart_with, kubectl_command, parse_manifest,
    render, run, run_async, template,
};

const RELEASE: &str = "jwks-operator";
const NS: &str = "jwks-system";

// === the permissions contract ===

/// Every permission the operator uses on policies, Secrets, ConfigMaps and
/// events (in each watched namespace): `(apiGroup, resource[/subresource], verbs)`.
const OPERATOR_RULES: &[(&str, &str, &[&str])] = &[
    ("jwks.dev", "keyrotationpolicies", &["get", "list", "watch"]),
    // Server-side apply of the status (`patch_status`); never read back.
    ("jwks.dev", "keyrotationpolicies/status", &["patch"]),
    // Whole-object writes with a resourceVersion precondition (`replace`).
    ("", "secrets", &["get", "list", "watch", "create", "update"]),
    (
        "",
        "configmaps",
        &["get", "list", "watch", "create", "update"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("", "events", &["create", "patch"]),
];

/// Verbs on the leader-election Lease, in the release namespace only.
const LEASE_VERBS: &[&str] = &["get", "create", "update", "patch"];

/// Every verb a SubjectAccessReview is asked about for each resource.
const ALL_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// One RBAC grant: (apiGroup, resource, verb, resourceName).
type Grant = (String, String, String, Option<String>);

fn grants_of(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        let names: Vec<Option<String>> = match list("resourceNames") {
            n if n.is_empty() => vec![None],
            n => n.into_iter().map(Some).collect(),
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn operator_grants() -> BTreeSet<Grant> {
    OPERATOR_RULES
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(|verb| {
                (
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    None,
                )
            })
        })
        .collect()
}

fn lease_grants(lease: &str) -> BTreeSet<Grant> {
    let grant = |verb: &str, name: Option<&str>| {
        (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            verb.to_owned(),
            name.map(str::to_owned),
        )
    };
    let mut out = BTreeSet::from([grant("create", None)]);
    for verb in LEASE_VERBS.iter().filter(|v| **v != "create") {
        out.insert(grant(verb, Some(lease)));
    }
    out
}

// === rendered-object helpers ===

fn all<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = all(objects, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, got {}",
        found.len()
    );
    found[0]
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for o in objects {
        *out.entry(o["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

fn container(objects: &[Value]) -> &Value {
    let containers = &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 1);
    &containers[0]
}

fn args(objects: &[Value]) -> Vec<String> {
    container(objects)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn port_names(ports: &Value) -> Vec<String> {
    ports
        .as_array()
        .map(|p| {
            p.iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn selector_labels() -> Value {
    json!({"app.kubernetes.io/name": "jwks-operator", "app.kubernetes.io/instance": RELEASE})
}

// === rendering ===

#[test]
fn chart_crd_is_a_copy_of_the_generated_crd() {
    let generated = include_str!("../crds/keyrotationpolicies.jwks.dev.yaml");
    let copy = std::fs::read_to_string(chart_dir().join("files/crd.yaml")).unwrap();
    assert!(
        copy == generated,
        "charts/jwks-operator/files/crd.yaml differs from crds/keyrotationpolicies.jwks.dev.yaml: \
         run scripts/sync-chart-crd.sh"
    );
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value = jwks_operator::yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "jwks-operator");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

/// Values combinations exercised by lint, render and dry-run tests.
fn combinations() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("default", vec![]),
        ("namespaced", vec![("watchNamespaces", "{team-a,team-b}")]),
        (
            "single-replica",
            vec![("replicas", "1"), ("leaderElection.enabled", "false")],
        ),
        (
            "service-monitor",
            vec![("metrics.serviceMonitor.enabled", "true")],
        ),
        (
            "monitoring",
            vec![
                ("metrics.serviceMonitor.enabled", "true"),
                ("metrics.prometheusRule.enabled", "true"),
                ("metrics.prometheusRule.labels.release", "kube-prometheus"),
                ("metrics.prometheusRule.extraRules[0].alert", "MyOwnAlert"),
                ("metrics.prometheusRule.extraRules[0].expr", "vector(1)"),
                (
                    "metrics.prometheusRule.extraRules[0].labels.severity",
                    "info",
                ),
                ("metrics.dashboard.enabled", "true"),
            ],
        ),
        (
            "token-listener",
            vec![
                ("tokenListener.enabled", "true"),
                ("tokenListener.service.enabled", "true"),
                ("tokenListener.auth.bearerTokenSecret.name", "minters"),
            ],
        ),
        (
            "network-policy",
            vec![
                ("networkPolicy.enabled", "true"),
                ("tokenListener.enabled", "true"),
                ("tokenListener.auth.bearerTokenSecret.name", "minters"),
                (
                    "networkPolicy.jwksFrom[0].namespaceSelector.matchLabels.team",
                    "a",
                ),
                (
                    "networkPolicy.tokenFrom[0].podSelector.matchLabels.role",
                    "test-client",
                ),
                (
                    "networkPolicy.metricsFrom[0].podSelector.matchLabels.app",
                    "prometheus",
                ),
            ],
        ),
        (
            "tls-secret",
            vec![
                ("tls.enabled", "true"),
                ("tls.secretName", "jwks-serving"),
                ("metrics.serviceMonitor.enabled", "true"),
            ],
        ),
        (
            "tls-cert-manager",
            vec![
                ("tls.enabled", "true"),
                ("tls.certManager.enabled", "true"),
                ("tls.certManager.issuerRef.name", "internal-ca"),
                ("tls.certManager.issuerRef.kind", "ClusterIssuer"),
                ("tls.certManager.duration", "720h"),
                ("tls.certManager.dnsNames[0]", "keys.example.com"),
                ("publicBaseUrl", "https://keys.example.com"),
            ],
        ),
        (
            "everything-else",
            vec![
                ("replicas", "3"),
                (
                    "image.digest",
                    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                ),
                ("imagePullSecrets[0].name", "regcred"),
                ("extraArgs[0]", "--default-policy=team-a/my-app"),
                ("extraEnv[0].name", "RUST_LOG"),
                ("extraEnv[0].value", "info"),
                ("extraVolumes[0].name", "hsm"),
                ("extraVolumes[0].configMap.name", "hsm-client"),
                ("extraVolumeMounts[0].name", "hsm"),
                ("extraVolumeMounts[0].mountPath", "/etc/hsm"),
                ("extraVolumeMounts[0].readOnly", "true"),
                ("podAnnotations.example\\.com/team", "identity"),
                ("podLabels.team", "identity"),
                ("commonLabels.cost-center", "security"),
                ("nodeSelector.kubernetes\\.io/os", "linux"),
                ("tolerations[0].key", "dedicated"),
                ("tolerations[0].operator", "Exists"),
                ("tolerations[0].effect", "NoSchedule"),
                ("publicBaseUrl", "https://keys.example.com"),
                ("defaultPolicy", "team-a/my-app"),
                ("metrics.service.enabled", "true"),
                ("serviceAccount.annotations.example\\.com/role", "jwks"),
                ("service.annotations.example\\.com/expose", "internal"),
            ],
        ),
    ]
}

#[test]
fn helm_lint_strict_passes_for_every_combination() {
    for (name, values) in combinations() {
        let out = run(helm::helm_command(None)
            .args(["lint", "--strict"])
            .arg(chart_dir())
            .args(helm::set_args(&[helm::LOCAL_IMAGE]))
            .args(helm::set_args(&values)));
        assert!(
            out.is_ok(),
            "helm lint --strict ({name}): {}",
            out.unwrap_err()
        );
    }
}

#[test]
fn every_value_is_commented_and_in_the_schema() {
    let values_yaml = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    // path -> line index of every mapping key in values.yaml
    let lines: Vec<&str> = values_yaml.lines().collect();
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('#') || trimmed.starts_with('-') || trimmed.is_empty() {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
        let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        keys.insert(path.join("."), i);
    }
    let commented = |line: usize| line > 0 && lines[line - 1].trim_start().starts_with('#');

    // Every schema property is in values.yaml; each is commented, or is a
    // group whose members all are.
    fn walk(
        path: &str,
        node: &Value,
        keys: &BTreeMap<String, usize>,
        commented: &dyn Fn(usize) -> bool,
        problems: &mut Vec<String>,
    ) {
        let Some(props) = node["properties"].as_object() else {
            return;
        };
        for (name, child) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if p == "global" || p == "resources.claims" {
                continue; // accepted for Helm and Kubernetes compatibility, not defaults of ours
            }
            match keys.get(&p) {
                None => problems.push(format!("{p}: in the schema, not in values.yaml")),
                Some(&line) if commented(line) => {}
                Some(_) if child["properties"].is_object() => {
                    walk(&p, child, keys, commented, problems)
                }
                Some(_) => problems.push(format!("{p}: no comment in values.yaml")),
            }
        }
    }
    let mut problems = Vec::new();
    walk("", &schema, &keys, &commented, &mut problems);
    // And every top-level value is in the schema (nested ones are held by
    // additionalProperties: false, which helm lint enforces).
    for key in keys.keys().filter(|k| !k.contains('.')) {
        if schema["properties"].get(key).is_none() {
            problems.push(format!("{key}: in values.yaml, not in the schema"));
        }
    }
    assert!(
        problems.is_empty(),
        "values.yaml/schema problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn default_values_render_a_least_privilege_highly_available_operator() {
    let objects = render(RELEASE, NS, &[]);
    assert_eq!(
        kinds(&objects),
        BTreeMap::from(
            [
                ("ClusterRole", 1),
                ("ClusterRoleBinding", 1),
                ("CustomResourceDefinition", 1),
                ("Deployment", 1),
                ("PodDisruptionBudget", 1),
                ("Role", 1),
                ("RoleBinding", 1),
                ("Service", 1),
                ("ServiceAccount", 1),
            ]
            .map(|(k, n)| (k.to_owned(), n))
        )
    );

    // Standard labels everywhere; namespaced objects in the release namespace.
    for o in &objects {
        let labels = &o["metadata"]["labels"];
        let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
        assert_eq!(labels["app.kubernetes.io/name"], "jwks-operator", "{what}");
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{what}");
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION"),
            "{what}"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
        assert_eq!(labels["helm.sh/chart"], "jwks-operator-0.1.0", "{what}");
        let cluster_scoped = [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
        ];
        if cluster_scoped.contains(&o["kind"].as_str().unwrap()) {
            assert!(o["metadata"].get("namespace").is_none(), "{what}");
        } else {
            assert_eq!(o["metadata"]["namespace"], NS, "{what}");
        }
    }

    // The Deployment: 2 leader-electing replicas with the contract's arguments.
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        selector_labels()
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(
        args(&objects),
        [
            "run",
            "--jwks-addr=0.0.0.0:8080",
            "--metrics-addr=0.0.0.0:9090",
            "--metrics-on-jwks-listener=false",
            "--leader-elect",
            "--leader-elect-lease-name=jwks-operator-leader",
            "--public-base-url=http://jwks-operator.jwks-system.svc:8080",
            "--log-format=json",
        ]
    );
    let c = container(&objects);
    assert_eq!(
        c["image"],
        format!(
            "ghcr.io/jwks-operator/jwks-operator:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        c["env"],
        json!([
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ])
    );
    assert_eq!(port_names(&c["ports"]), ["jwks", "metrics"]);
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][1]["containerPort"], 9090);
    assert_eq!(
        c["lifecycle"],
        json!({"preStop": {"sleep": {"seconds": 5}}}),
        "a stopping pod keeps serving while the endpoints drop it"
    );
    // Probes on the metrics port, whose connection cap JWKS clients do not share.
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    // /metrics only on the metrics port.
    assert!(args(&objects).contains(&"--metrics-on-jwks-listener=false".to_owned()));
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    // Restricted pod security.
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(pod.get("volumes").is_none(), "no writable volume is needed");

    // Spread over nodes and zones, selecting our own pods.
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    let keys: Vec<&str> = spread
        .iter()
        .map(|t| t["topologyKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    for t in spread {
        assert_eq!(t["labelSelector"]["matchLabels"], selector_labels());
    }

    // The JWKS Service: the JWKS port only.
    let service = one(&objects, "Service");
    assert_eq!(service["metadata"]["name"], RELEASE);
    assert_eq!(service["spec"]["selector"], selector_labels());
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "targetPort": "jwks", "protocol": "TCP", "appProtocol": "http"}])
    );

    // PDB with 2 replicas.
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], selector_labels());

    // RBAC: exactly the contract, cluster-wide; the Lease only here, only ours.
    let cluster_role = one(&objects, "ClusterRole");
    assert_eq!(grants_of(cluster_role), operator_grants());
    let binding = one(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], RELEASE);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}])
    );
    let lease_role = one(&objects, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], NS);
    assert_eq!(grants_of(lease_role), lease_grants("jwks-operator-leader"));
    assert_eq!(
        one(&objects, "RoleBinding")["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}])
    );
    for role in all(&objects, "ClusterRole")
        .into_iter()
        .chain(all(&objects, "Role"))
    {
        for (group, resource, verb, _) in grants_of(role) {
            assert!(
                ![group.as_str(), resource.as_str(), verb.as_str()].contains(&"*"),
                "wildcard in {role}"
            );
            assert!(
                ![
                    "delete",
                    "deletecollection",
                    "escalate",
                    "bind",
                    "impersonate"
                ]
                .contains(&verb.as_str()),
                "{verb} {resource} granted"
            );
        }
    }

    // The CRD: the generated one, kept on uninstall.
    let crd = one(&objects, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"],
        json!({"helm.sh/resource-policy": "keep"})
    );
    let mut stripped = crd.clone();
    let meta = stripped["metadata"].as_object_mut().unwrap();
    meta.remove("labels");
    meta.remove("annotations");
    let generated: Value =
        jwks_operator::yaml::from_str(include_str!("../crds/keyrotationpolicies.jwks.dev.yaml"))
            .unwrap();
    assert!(stripped == generated, "the rendered CRD differs from crds/");
    // Verbatim, not merely equivalent: the whole spec is the generated text.
    let generated_text = include_str!("../crds/keyrotationpolicies.jwks.dev.yaml");
    let spec_text = &generated_text[generated_text.find("\nspec:\n").expect("spec")..];
    let rendered_text = template(RELEASE, NS, &[]).unwrap();
    assert!(
        rendered_text.contains(spec_text),
        "the CRD spec is not rendered verbatim"
    );

    // The ServiceAccount does not hand its token to pods that borrow it.
    assert_eq!(
        one(&objects, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
}

#[test]
fn namespaced_mode_grants_roles_in_each_watched_namespace_only() {
    let objects = render(RELEASE, NS, &[("watchNamespaces", "{team-a,team-b}")]);
    assert!(all(&objects, "ClusterRole").is_empty());
    assert!(all(&objects, "ClusterRoleBinding").is_empty());
    let args = args(&objects);
    let namespaces: Vec<&str> = args
        .iter()
        .filter(|a| a.starts_with("--namespace"))
        .map(String::as_str)
        .collect();
    assert_eq!(namespaces, ["--namespace=team-a", "--namespace=team-b"]);
    assert!(args.contains(&"--leader-elect".to_owned()));

    for ns in ["team-a", "team-b"] {
        let role = all(&objects, "Role")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}"));
        assert_eq!(role["metadata"]["name"], RELEASE);
        assert_eq!(grants_of(role), operator_grants());
        let binding = all(&objects, "RoleBinding")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no RoleBinding in {ns}"));
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}])
        );
    }
    // The Lease Role stays in the release namespace.
    let lease_role = named(&objects, "Role", "jwks-operator-leader-election").unwrap();
    assert_eq!(lease_role["metadata"]["namespace"], NS);
    assert_eq!(grants_of(lease_role), lease_grants("jwks-operator-leader"));
    assert_eq!(all(&objects, "Role").len(), 3);
    assert_eq!(all(&objects, "RoleBinding").len(), 3);
}

#[test]
fn one_replica_without_leader_election_has_no_lease_rbac_and_no_pdb() {
    let objects = render(
        RELEASE,
        NS,
        &[("replicas", "1"), ("leaderElection.enabled", "false")],
    );
    assert_eq!(one(&objects, "Deployment")["spec"]["replicas"], 1);
    assert!(
        !args(&objects)
            .iter()
            .any(|a| a.starts_with("--leader-elect"))
    );
    assert!(
        all(&objects, "Role").is_empty(),
        "no Lease Role without leader election"
    );
    assert!(all(&objects, "RoleBinding").is_empty());
    assert!(all(&objects, "PodDisruptionBudget").is_empty());
    // One replica with leader election: still no PDB (it would block drains).
    let objects = render(RELEASE, NS, &[("replicas", "1")]);
    assert!(args(&objects).contains(&"--leader-elect".to_owned()));
    assert!(all(&objects, "PodDisruptionBudget").is_empty());
    // Three: a PDB.
    let objects = render(RELEASE, NS, &[("replicas", "3")]);
    assert_eq!(
        one(&objects, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
}

#[test]
fn token_listener_is_never_on_the_jwks_service() {
    let objects = render(
        RELEASE,
        NS,
        &[
            ("tokenListener.enabled", "true"),
            ("tokenListener.auth.bearerTokenSecret.name", "minters"),
        ],
    );
    assert!(args(&objects).contains(&"--token-addr=0.0.0.0:8081".to_owned()));
    let c = container(&objects);
    assert_eq!(port_names(&c["ports"]), ["jwks", "metrics", "token"]);
    assert_eq!(c["ports"][2]["containerPort"], 8081);
    // Only the JWKS Service, still with only the JWKS port.
    let service = one(&objects, "Service");
    assert_eq!(port_names(&service["spec"]["ports"]), ["http"]);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "jwks");

    let objects = render(
        RELEASE,
        NS,
        &[
            ("tokenListener.enabled", "true"),
            ("tokenListener.service.enabled", "true"),
            ("tokenListener.auth.bearerTokenSecret.name", "minters"),
        ],
    );
    let jwks = named(&objects, "Service", RELEASE).unwrap();
    assert_eq!(port_names(&jwks["spec"]["ports"]), ["http"]);
    let token = named(&objects, "Service", "jwks-operator-token").expect("token Service");
    assert_eq!(token["spec"]["type"], "ClusterIP");
    assert_eq!(token["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(token["spec"]["ports"][0]["targetPort"], "token");
    assert_eq!(all(&objects, "Service").len(), 2);

    // Off by default: no flag, no port.
    let objects = render(RELEASE, NS, &[]);
    assert!(!args(&objects).iter().any(|a| a.starts_with("--token-addr")));
    assert!(!port_names(&container(&objects)["ports"]).contains(&"token".to_owned()));
}

/// The token listener's credential comes from Secrets mounted into the pod:
/// a bearer token file and/or the CA of client certificates (with TLS).
#[test]
fn token_listener_gets_its_credentials_from_mounted_secrets() {
    let objects = render(
        RELEASE,
        NS,
        &[
            ("tokenListener.enabled", "true"),
            ("tokenListener.auth.bearerTokenSecret.name", "minters"),
        ],
    );
    assert!(
        args(&objects)
            .contains(&"--token-auth-file=/etc/jwks-operator/token-auth/token".to_owned())
    );
    assert!(
        !args(&objects)
            .iter()
            .any(|a| a.starts_with("--token-client-ca-file"))
    );
    let c = container(&objects);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "token-auth", "mountPath": "/etc/jwks-operator/token-auth", "readOnly": true}])
    );
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "token-auth", "secret": {"secretName": "minters"}}])
    );

    let objects = render(
        RELEASE,
        NS,
        &[
            ("tls.enabled", "true"),
            ("tls.secretName", "jwks-serving"),
            ("tokenListener.enabled", "true"),
            ("tokenListener.auth.clientCASecret.name", "client-ca"),
            ("tokenListener.auth.clientCASecret.key", "ca.pem"),
        ],
    );
    assert!(
        args(&objects).contains(
            &"--token-client-ca-file=/etc/jwks-operator/token-client-ca/ca.pem".to_owned()
        )
    );
    assert!(
        !args(&objects)
            .iter()
            .any(|a| a.starts_with("--token-auth-file"))
    );
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "tls", "secret": {"secretName": "jwks-serving"}},
            {"name": "token-client-ca", "secret": {"secretName": "client-ca"}},
        ])
    );
    // Named but the listener off: nothing mounted.
    let objects = render(
        RELEASE,
        NS,
        &[("tokenListener.auth.bearerTokenSecret.name", "minters")],
    );
    assert!(container(&objects).get("volumeMounts").is_none());
}

#[test]
fn service_monitor_scrapes_the_metrics_service_not_the_jwks_one() {
    let objects = render(RELEASE, NS, &[("metrics.serviceMonitor.enabled", "true")]);
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["spec"]["endpoints"][0],
        json!({"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s", "honorLabels": true})
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NS])
    );
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    let selects = |service: &Value| {
        selector
            .iter()
            .all(|(k, v)| &service["metadata"]["labels"][k] == v)
    };
    let metrics = named(&objects, "Service", "jwks-operator-metrics").expect("metrics Service");
    assert!(
        selects(metrics),
        "the ServiceMonitor selects the metrics Service"
    );
    assert_eq!(port_names(&metrics["spec"]["ports"]), ["metrics"]);
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    let jwks = named(&objects, "Service", RELEASE).unwrap();
    assert!(
        !selects(jwks),
        "the ServiceMonitor must not select the JWKS Service"
    );
    // Off by default.
    assert!(all(&render(RELEASE, NS, &[]), "ServiceMonitor").is_empty());
}

#[test]
fn network_policy_admits_only_the_operators_ports() {
    let objects = render(
        RELEASE,
        NS,
        &[
            ("networkPolicy.enabled", "true"),
            (
                "networkPolicy.jwksFrom[0].namespaceSelector.matchLabels.team",
                "a",
            ),
        ],
    );
    let policy = one(&objects, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        selector_labels()
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([
            {"ports": [{"port": "jwks", "protocol": "TCP"}],
             "from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]},
            {"ports": [{"port": "metrics", "protocol": "TCP"}]},
        ])
    );
    // With the token listener on and no tokenFrom, its port gets no rule:
    // nobody may reach it (an ingress rule without `from` admits everyone).
    let token_on = [
        ("networkPolicy.enabled", "true"),
        ("tokenListener.enabled", "true"),
        ("tokenListener.auth.bearerTokenSecret.name", "minters"),
    ];
    let objects = render(RELEASE, NS, &token_on);
    let ingress = one(&objects, "NetworkPolicy")["spec"]["ingress"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    assert!(
        ingress
            .iter()
            .all(|rule| rule["ports"][0]["port"] != "token"),
        "{ingress:?}"
    );
    // Listed peers, and only they, reach it.
    let mut listed = token_on.to_vec();
    listed.push((
        "networkPolicy.tokenFrom[0].podSelector.matchLabels.role",
        "test-client",
    ));
    let objects = render(RELEASE, NS, &listed);
    let ingress = one(&objects, "NetworkPolicy")["spec"]["ingress"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ingress.len(), 3);
    assert_eq!(
        ingress[2],
        json!({"ports": [{"port": "token", "protocol": "TCP"}],
               "from": [{"podSelector": {"matchLabels": {"role": "test-client"}}}]})
    );
    assert!(all(&render(RELEASE, NS, &[]), "NetworkPolicy").is_empty());
}

/// No image is published under the chart's default name: with it, and
/// neither a digest nor `pullPolicy: Never` (an image loaded into the
/// nodes), `helm install` fails at template time, saying so and what to do.
#[test]
fn the_unpublished_default_image_fails_at_template_time_with_what_to_do() {
    let raw = |values: &[(&str, &str)]| {
        run(helm::helm_command(None)
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args(["--namespace", NS])
            .args(helm::set_args(values)))
    };
    let err = raw(&[]).expect_err("the default image renders");
    for needle in [
        "no jwks-operator image is published yet",
        "scripts/build-image.sh",
        "image.pullPolicy=Never",
        "image.repository",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    // Each way out renders.
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for values in [
        &[("image.pullPolicy", "Never")][..],
        &[("image.repository", "registry.example.com/jwks-operator")][..],
        &[("image.digest", digest)][..],
    ] {
        let out = raw(values);
        assert!(out.is_ok(), "{values:?}: {}", out.unwrap_err());
    }
    // And the README's Install block takes one of them.
    let install = helm::readme_commands("Install")
        .into_iter()
        .find(|a| a.starts_with(&["helm".into(), "install".into()]))
        .expect("a helm install line");
    assert!(
        install
            .windows(2)
            .any(|w| w == ["--set", "image.pullPolicy=Never"]),
        "{install:?}"
    );
}

#[test]
fn image_tag_digest_and_extras_render_where_expected() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let objects = render(RELEASE, NS, &[("image.digest", digest)]);
    assert_eq!(
        container(&objects)["image"],
        format!("ghcr.io/jwks-operator/jwks-operator@{digest}")
    );
    let objects = render(
        RELEASE,
        NS,
        &[
            ("image.tag", "v9"),
            ("image.repository", "registry.local/jwks"),
        ],
    );
    assert_eq!(container(&objects)["image"], "registry.local/jwks:v9");

    let objects = render(
        RELEASE,
        NS,
        &[
            ("extraArgs[0]", "--default-policy=a/b"),
            ("extraEnv[0].name", "RUST_LOG"),
            ("extraEnv[0].value", "debug"),
            ("logFormat", "text"),
            ("publicBaseUrl", "https://keys.example.com"),
            ("defaultPolicy", "team-a/my-app"),
            ("crds.enabled", "false"),
        ],
    );
    let a = args(&objects);
    assert!(a.contains(&"--log-format=text".to_owned()));
    assert!(a.contains(&"--public-base-url=https://keys.example.com".to_owned()));
    assert!(a.contains(&"--default-policy=team-a/my-app".to_owned()));
    assert_eq!(
        a.last().unwrap(),
        "--default-policy=a/b",
        "extraArgs come last"
    );
    assert_eq!(
        container(&objects)["env"][2],
        json!({"name": "RUST_LOG", "value": "debug"})
    );
    assert!(all(&objects, "CustomResourceDefinition").is_empty());

    // extraVolumes and extraVolumeMounts, alone (the pod has no other
    // volume by default) and beside the chart's own.
    for tls in ["false", "true"] {
        let objects = render(
            RELEASE,
            NS,
            &[
                ("tls.enabled", tls),
                ("tls.secretName", "jwks-tls"),
                ("extraVolumes[0].name", "hsm"),
                ("extraVolumes[0].configMap.name", "hsm-client"),
                ("extraVolumeMounts[0].name", "hsm"),
                ("extraVolumeMounts[0].mountPath", "/etc/hsm"),
            ],
        );
        let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().expect("volumes");
        assert!(
            volumes.contains(&json!({"name": "hsm", "configMap": {"name": "hsm-client"}})),
            "{volumes:?}"
        );
        assert_eq!(volumes.len(), if tls == "true" { 2 } else { 1 });
        let mounts = container(&objects)["volumeMounts"]
            .as_array()
            .expect("mounts");
        assert!(
            mounts.contains(&json!({"name": "hsm", "mountPath": "/etc/hsm"})),
            "{mounts:?}"
        );
    }
}

#[test]
fn rbac_and_service_account_can_be_brought_by_the_user() {
    let objects = render(
        RELEASE,
        NS,
        &[
            ("rbac.create", "false"),
            ("serviceAccount.create", "false"),
            ("serviceAccount.name", "platform-jwks"),
        ],
    );
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        assert!(all(&objects, kind).is_empty(), "{kind} rendered");
    }
    assert_eq!(
        one(&objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        "platform-jwks"
    );
}

#[test]
fn tls_serves_https_everywhere_from_a_mounted_secret_or_a_cert_manager_certificate() {
    // Off by default: plain HTTP, no volume, no Certificate.
    let plain = render(RELEASE, NS, &[]);
    assert!(!kinds(&plain).contains_key("Certificate"));
    assert!(!args(&plain).iter().any(|a| a.starts_with("--tls-")));
    assert!(container(&plain)["volumeMounts"].is_null());

    let base = "https://jwks-operator.jwks-system.svc:8080";
    for (secret, values) in [
        (
            "existing-tls",
            vec![("tls.enabled", "true"), ("tls.secretName", "existing-tls")],
        ),
        (
            "jwks-operator-tls",
            vec![
                ("tls.enabled", "true"),
                ("tls.certManager.enabled", "true"),
                ("tls.certManager.issuerRef.name", "internal-ca"),
                ("metrics.serviceMonitor.enabled", "true"),
            ],
        ),
    ] {
        let objects = render(RELEASE, NS, &values);
        let args = args(&objects);
        for flag in [
            "--tls-cert-file=/etc/jwks-operator/tls/tls.crt",
            "--tls-key-file=/etc/jwks-operator/tls/tls.key",
            &format!("--public-base-url={base}"),
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
        }
        let c = container(&objects);
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "tls", "mountPath": "/etc/jwks-operator/tls", "readOnly": true}])
        );
        let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"],
            json!([{"name": "tls", "secret": {"secretName": secret}}])
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
        }
        let service = named(&objects, "Service", RELEASE).unwrap();
        assert_eq!(
            service["spec"]["ports"],
            json!([{"name": "https", "port": 8080, "targetPort": "jwks", "protocol": "TCP", "appProtocol": "https"}])
        );
        if secret == "jwks-operator-tls" {
            let cert = one(&objects, "Certificate");
            assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
            assert_eq!(cert["spec"]["secretName"], secret);
            assert_eq!(cert["spec"]["duration"], "2160h");
            assert_eq!(
                cert["spec"]["dnsNames"],
                json!([
                    "jwks-operator.jwks-system.svc",
                    "jwks-operator.jwks-system.svc.cluster.local"
                ])
            );
            assert_eq!(
                cert["spec"]["issuerRef"],
                json!({"name": "internal-ca", "kind": "Issuer", "group": "cert-manager.io"})
            );
            let endpoint = &one(&objects, "ServiceMonitor")["spec"]["endpoints"][0];
            assert_eq!(endpoint["scheme"], "https");
            assert_eq!(
                endpoint["tlsConfig"]["ca"]["secret"],
                json!({"name": secret, "key": "ca.crt"})
            );
            assert_eq!(
                endpoint["tlsConfig"]["serverName"],
                "jwks-operator.jwks-system.svc"
            );
        } else {
            assert!(!kinds(&objects).contains_key("Certificate"));
        }
    }

    // A given publicBaseUrl wins over the default.
    let objects = render(
        RELEASE,
        NS,
        &[
            ("tls.enabled", "true"),
            ("tls.secretName", "s"),
            ("publicBaseUrl", "https://keys.example.com"),
        ],
    );
    assert!(
        args(&objects)
            .iter()
            .any(|a| a == "--public-base-url=https://keys.example.com")
    );
}

#[test]
fn wrong_values_fail_with_a_message_naming_them() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("replicas", "-1")],
            "at '/replicas': minimum: got -1, want 1",
        ),
        (&[("replicas", "two")], "at '/replicas'"),
        (
            &[("logFormat", "xml")],
            "at '/logFormat': value must be one of 'text', 'json'",
        ),
        (
            &[("colour", "blue")],
            "additional properties 'colour' not allowed",
        ),
        (
            &[("image.tagg", "v1")],
            "additional properties 'tagg' not allowed",
        ),
        (&[("image.digest", "latest")], "at '/image/digest'"),
        (
            &[("image.pullPolicy", "Sometimes")],
            "at '/image/pullPolicy'",
        ),
        (
            &[("watchNamespaces", "{Team_A}")],
            "at '/watchNamespaces/0'",
        ),
        (&[("watchNamespaces", "{a,a}")], "at '/watchNamespaces'"),
        (&[("service.port", "70000")], "at '/service/port'"),
        (
            &[("publicBaseUrl", "keys.example.com")],
            "at '/publicBaseUrl'",
        ),
        (&[("defaultPolicy", "my-app")], "at '/defaultPolicy'"),
        (
            &[("metrics.serviceMonitor.interval", "often")],
            "at '/metrics/serviceMonitor/interval'",
        ),
        (&[("crds.enabled", "yes")], "at '/crds/enabled'"),
        (
            &[("shutdownDelaySeconds", "-5")],
            "at '/shutdownDelaySeconds'",
        ),
        (
            &[("shutdownDelaySeconds", "30")],
            "shutdownDelaySeconds (30) must be less than terminationGracePeriodSeconds (30)",
        ),
        (
            &[("serviceAccount.create", "false")],
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
        (
            &[("replicas", "2"), ("leaderElection.enabled", "false")],
            "replicas is 2 but leaderElection.enabled is false: every replica would write keys",
        ),
        (
            &[("tokenListener.service.enabled", "true")],
            "tokenListener.service.enabled requires tokenListener.enabled",
        ),
        (
            &[("tokenListener.enabled", "true")],
            "tokenListener.enabled needs a client credential",
        ),
        (
            &[
                ("tokenListener.enabled", "true"),
                ("tokenListener.auth.clientCASecret.name", "client-ca"),
            ],
            "tokenListener.auth.clientCASecret needs tls.enabled",
        ),
        (
            &[("tls.enabled", "true")],
            "tls.enabled needs a certificate: set tls.secretName",
        ),
        (
            &[("tls.certManager.enabled", "true")],
            "tls.certManager.enabled requires tls.enabled",
        ),
        (
            &[("tls.enabled", "true"), ("tls.certManager.enabled", "true")],
            "tls.certManager.issuerRef.name is empty",
        ),
        (
            &[("tls.certManager.issuerRef.kind", "Vault")],
            "at '/tls/certManager/issuerRef/kind'",
        ),
        (
            &[("tls.certManager.duration", "90 days")],
            "at '/tls/certManager/duration'",
        ),
        (&[("tls.secretName", "My_Secret")], "at '/tls/secretName'"),
    ];
    for (values, needle) in cases {
        match template(RELEASE, NS, values) {
            Ok(_) => panic!("{values:?} rendered; expected a failure mentioning {needle:?}"),
            Err(e) => assert!(
                e.contains(needle),
                "{values:?}: expected {needle:?} in:\n{e}"
            ),
        }
    }
}

// === the container image ===

#[test]
fn dockerfile_builds_this_crates_binary_into_a_static_non_root_image() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last_from = froms.last().unwrap();
    assert!(
        last_from.contains("gcr.io/distroless/static"),
        "the runtime stage is distroless static (no shell): {last_from}"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked")
            && dockerfile.contains("--bin jwks-operator")
            && dockerfile.contains("x86_64-unknown-linux-musl"),
        "the image builds this crate's jwks-operator binary, statically, from Cargo.lock"
    );
    // The chart runs as the image's user.
    let user_line = instructions
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert_eq!(*user_line, "USER 65532:65532");
    assert!(instructions.contains(&r#"ENTRYPOINT ["/jwks-operator"]"#));
    let objects = render(RELEASE, NS, &[]);
    assert_eq!(container(&objects)["securityContext"]["runAsUser"], 65532);
    // The build context leaves out what would bloat it or leak into it.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    for needed in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim_matches('/') == needed),
            ".dockerignore lacks {needed}"
        );
    }
}

// === the real API server ===

async fn label_namespace(client: &Client, ns: &str, labels: Value) {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("label namespace");
}

/// Installs prometheus-operator's ServiceMonitor and PrometheusRule CRDs,
/// taken from its Go module by tests/controlplane/build-prometheus.sh (the
/// real schemas: a misspelt or mistyped field of ours fails the dry-run).
async fn install_prometheus_operator_crds(client: &Client) {
    for plural in ["servicemonitors", "prometheusrules"] {
        let crd: CustomResourceDefinition =
            jwks_operator::yaml::from_str(&support::prometheus::crd_yaml(plural)).unwrap();
        apply_crd(client, &crd).await;
    }
}

/// cert-manager's CRDs, as its Go module publishes them
/// (tests/controlplane/cert-manager-crds.sh fetches it from the module proxy).
async fn install_cert_manager_crds(client: &Client) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/controlplane/cert-manager-crds.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run cert-manager-crds.sh");
    assert!(out.status.success(), "{} failed", script.display());
    let dir = String::from_utf8(out.stdout).unwrap();
    let dir = std::path::Path::new(dir.trim());
    for file in [
        "cert-manager.io_certificates.yaml",
        "cert-manager.io_issuers.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let crd: CustomResourceDefinition = jwks_operator::yaml::from_str(&text).unwrap();
        apply_crd(client, &crd).await;
    }
}

/// `kubectl apply --server-side --dry-run=server` of `yaml`: the API server
/// validates every object (strict field validation, admission) and persists
/// nothing. Returns kubectl's stderr (warnings).
async fn server_dry_run(cp: &ControlPlane, yaml: &str) -> Result<String, String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let mut cmd = kubectl_command(&cp.kubeconfig);
    cmd.args([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=helm-chart-test",
        "--dry-run=server",
        "--validate=strict",
        "-f",
    ])
    .arg(file.path());
    let printable = format!("{cmd:?}");
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stderr)
    } else {
        Err(format!(
            "{printable}: {stderr}{}",
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

fn pod_from_template(deployment: &Value, name: &str) -> Pod {
    let template = &deployment["spec"]["template"];
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }))
    .expect("the pod template is a Pod spec")
}

#[tokio::test]
async fn every_rendered_combination_passes_server_side_dry_run_and_pod_security_restricted() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    install_prometheus_operator_crds(&admin).await;
    install_cert_manager_crds(&admin).await;
    let ns = cp.namespace(&admin, "chart-dryrun").await;
    // Enforce the restricted Pod Security Standard, and warn on workloads.
    label_namespace(
        &admin,
        &ns,
        json!({
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }),
    )
    .await;
    // Watched namespaces must exist.
    for watched in ["team-a", "team-b"] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": watched}})).unwrap();
        match Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create namespace {watched}: {e}"),
        }
    }

    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    for (name, values) in combinations() {
        let yaml = template(RELEASE, &ns, &values).unwrap_or_else(|e| panic!("{name}: {e}"));
        let objects = parse_manifest(&yaml);
        let warnings = server_dry_run(cp, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{name}: the API server rejected the chart:\n{e}"));
        assert!(
            !warnings.contains("Warning"),
            "{name}: the API server warned (Pod Security restricted?):\n{warnings}"
        );
        // A Pod made from the Deployment's template passes Pod Security
        // admission at `restricted` (enforced, not only warned).
        let pod = pod_from_template(one(&objects, "Deployment"), &format!("pod-{name}"));
        pods.create(&dry_run, &pod)
            .await
            .unwrap_or_else(|e| panic!("{name}: a pod from the template is not accepted: {e}"));
    }

    // The control for the Certificate: the API server checks it against
    // cert-manager's schema (a misspelt field is refused).
    let yaml = template(
        RELEASE,
        &ns,
        &[
            ("tls.enabled", "true"),
            ("tls.certManager.enabled", "true"),
            ("tls.certManager.issuerRef.name", "internal-ca"),
        ],
    )
    .unwrap();
    let broken = yaml.replace("  issuerRef:\n", "  issuerReff:\n");
    assert_ne!(broken, yaml);
    let refused = server_dry_run(cp, &broken)
        .await
        .expect_err("a Certificate with an unknown field");
    assert!(refused.contains("issuerReff"), "{refused}");

    // The control: prometheus-operator's real schema is enforced, so a
    // misspelt field of the PrometheusRule is refused.
    let objects = render(RELEASE, &ns, &[("metrics.prometheusRule.enabled", "true")]);
    let mut rule = one(&objects, "PrometheusRule").clone();
    rule["spec"]["groups"][0]["rules"][0]["forr"] = json!("5m");
    let refused = server_dry_run(cp, &helm::to_yaml_stream(&[&rule])).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("forr")),
        "a PrometheusRule with an unknown field was accepted: {refused:?}"
    );

    // The control: the same Pod without its security contexts is refused, so
    // the acceptance above is Pod Security's verdict, not an absent check.
    let objects = render(RELEASE, &ns, &[]);
    let mut deployment = one(&objects, "Deployment").clone();
    let spec = &mut deployment["spec"]["template"]["spec"];
    spec.as_object_mut().unwrap().remove("securityContext");
    spec["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    match pods
        .create(&dry_run, &pod_from_template(&deployment, "insecure"))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("violates PodSecurity \"restricted"),
                "{}",
                status.message
            );
        }
        other => panic!("an insecure pod was not refused: {other:?}"),
    }
}

/// The CRD and the example policy pass the API server too.
#[tokio::test]
async fn the_example_policy_is_accepted() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    cp.install_crd(&admin).await;
    let ns = cp.namespace(&admin, "chart-example").await;
    let policy: KeyRotationPolicy =
        jwks_operator::yaml::from_str(include_str!("../examples/keyrotationpolicy.yaml")).unwrap();
    let created = Api::<KeyRotationPolicy>::namespaced(admin, &ns)
        .create(&PostParams::default(), &policy)
        .await
        .expect("the example policy is valid");
    assert_eq!(created.name_any(), "my-app");
}

async fn helm_history(cp: &ControlPlane, release: &Release) -> Vec<Value> {
    let mut cmd = helm::helm_command(Some(&cp.kubeconfig));
    cmd.args([
        "history",
        &release.name,
        "--namespace",
        &release.namespace,
        "-o",
        "json",
    ]);
    serde_json::from_str(&run_async(cmd).await.unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

/// `kubectl get` of every object in `objects` (`--ignore-not-found`): the
/// `kind/name` of those that exist.
async fn existing(cp: &ControlPlane, objects: &[&Value]) -> Vec<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), helm::to_yaml_stream(objects)).unwrap();
    let mut cmd = kubectl_command(&cp.kubeconfig);
    cmd.args(["get", "--ignore-not-found", "-o", "name", "-f"])
        .arg(file.path());
    run_async(cmd)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn helm_install_upgrade_and_uninstall_behave_as_documented() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    let ns = cp.namespace(&admin, "chart-life").await;

    // Install with the CRD. The harness already applied the same CRD, as a
    // user who once ran `kubectl apply -f crds/` would have: --take-ownership
    // hands it to the release (see README).
    let mut release = install_chart_with(
        cp,
        &ns,
        &[("crds.enabled", "true"), ("logFormat", "json")],
        &["--take-ownership"],
    )
    .await;
    let objects: Vec<&Value> = release.manifest.iter().collect();
    let live = existing(cp, &objects).await;
    assert_eq!(live.len(), objects.len(), "every object exists: {live:?}");
    let crd = Api::<CustomResourceDefinition>::all(admin.clone())
        .get("keyrotationpolicies.jwks.dev")
        .await
        .unwrap();
    let annotations = crd.annotations();
    assert_eq!(
        annotations.get("meta.helm.sh/release-name"),
        Some(&release.name)
    );
    assert_eq!(
        annotations
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep")
    );
    // NOTES tell where the JWKS is.
    let url = format!(
        "http://{}.{ns}.svc:8080/<namespace>/<policy>/.well-known/jwks.json",
        release.name
    );
    assert!(
        release.install_output.contains(&url),
        "NOTES lack {url}:\n{}",
        release.install_output
    );
    assert!(release.install_output.contains("kind: KeyRotationPolicy"));

    // What the operator would have made: a policy and its key Secret.
    let policy: KeyRotationPolicy =
        jwks_operator::yaml::from_str(include_str!("../examples/keyrotationpolicy.yaml")).unwrap();
    let policy = Api::<KeyRotationPolicy>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "my-app-jwks",
            "labels": {"app.kubernetes.io/managed-by": "jwks-operator", "jwks.dev/policy": "my-app"},
            "ownerReferences": [policy.controller_owner_ref(&()).unwrap()],
        },
        "stringData": {"active.kid": "kid-1"},
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    // Upgrade: a changed value reaches the Deployment.
    release.upgrade(&[("logFormat", "text")]).await;
    assert!(
        release
            .operator_args()
            .contains(&"--log-format=text".to_owned())
    );
    let deployment = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), &ns)
        .get(&release.name)
        .await
        .unwrap();
    let live_args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        live_args.contains(&"--log-format=text".to_owned()),
        "{live_args:?}"
    );
    let history = helm_history(cp, &release).await;
    let statuses: Vec<(i64, &str)> = history
        .iter()
        .map(|h| {
            (
                h["revision"].as_i64().unwrap(),
                h["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [(1, "superseded"), (2, "deployed")]);

    // Uninstall: everything of the release goes, except the CRD; policies
    // and key Secrets stay.
    let before: Vec<Value> = release.manifest.clone();
    release.uninstall().await;
    let (crds, rest): (Vec<&Value>, Vec<&Value>) = before
        .iter()
        .partition(|o| o["kind"] == "CustomResourceDefinition");
    assert_eq!(crds.len(), 1);
    let left = existing(cp, &rest).await;
    assert!(left.is_empty(), "left behind by helm uninstall: {left:?}");
    assert_eq!(
        existing(cp, &crds).await,
        ["customresourcedefinition.apiextensions.k8s.io/keyrotationpolicies.jwks.dev"]
    );
    assert!(
        Api::<KeyRotationPolicy>::namespaced(admin.clone(), &ns)
            .get_opt("my-app")
            .await
            .unwrap()
            .is_some(),
        "the policy survives"
    );
    assert!(
        secrets.get_opt("my-app-jwks").await.unwrap().is_some(),
        "the key Secret survives"
    );
}

// === SubjectAccessReview: exactly the permissions the operator uses ===

struct Access<'a> {
    admin: &'a Client,
    release: &'a Release,
}

impl Access<'_> {
    /// Whether the chart's ServiceAccount may `verb` `resource` (optionally
    /// `resource/subresource`) of `group` in `namespace` ("" = all
    /// namespaces), optionally the object `name`.
    async fn can(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> bool {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": self.release.service_account_user(),
                "groups": [
                    "system:serviceaccounts",
                    format!("system:serviceaccounts:{}", self.release.namespace),
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                    "subresource": subresource,
                    "namespace": namespace,
                    "name": name.unwrap_or(""),
                },
            },
        }))
        .unwrap();
        let answer = Api::<SubjectAccessReview>::all(self.admin.clone())
            .create(&PostParams::default(), &review)
            .await
            .expect("SubjectAccessReview");
        answer.status.expect("status").allowed
    }

    /// Checks every verb on every resource of [`OPERATOR_RULES`] in
    /// `namespace`: allowed exactly when `granted` and the rule lists it.
    async fn operator_matrix(&self, namespace: &str, granted: bool, mismatches: &mut Vec<String>) {
        for (group, resource, verbs) in OPERATOR_RULES {
            for verb in ALL_VERBS {
                let expected = granted && verbs.contains(verb);
                if self.can(verb, group, resource, namespace, None).await != expected {
                    mismatches.push(format!(
                        "{verb} {group}/{resource} in {namespace:?}: expected allowed={expected}"
                    ));
                }
            }
        }
    }

    /// Checks the Lease permissions: in the release namespace exactly
    /// [`LEASE_VERBS`] on the chart's Lease (create without a name), nothing
    /// on other Leases, nothing in `elsewhere`.
    async fn lease_matrix(&self, lease: &str, elsewhere: &str, mismatches: &mut Vec<String>) {
        let own = self.release.namespace.as_str();
        let group = "coordination.k8s.io";
        let ours = Some(lease.to_owned());
        // (verb, namespace, name, expected): create cannot be limited to a
        // name, so it is allowed for any name, in the release namespace only.
        let mut cases: Vec<(&str, &str, Option<String>, bool)> = Vec::new();
        for verb in ALL_VERBS {
            let create = *verb == "create";
            cases.push((verb, own, ours.clone(), LEASE_VERBS.contains(verb)));
            cases.push((verb, own, Some("someone-elses-lease".into()), create));
            cases.push((verb, own, None, create));
            cases.push((verb, elsewhere, ours.clone(), false));
            cases.push((verb, "", None, false));
        }
        for (verb, ns, name, expected) in cases {
            if self.can(verb, group, "leases", ns, name.as_deref()).await != expected {
                mismatches.push(format!(
                    "{verb} leases {name:?} in {ns:?}: expected allowed={expected}"
                ));
            }
        }
    }

    /// Things the operator never does, anywhere.
    async fn never(&self, namespaces: &[&str], mismatches: &mut Vec<String>) {
        let forbidden: &[(&str, &str, &str)] = &[
            ("create", "jwks.dev", "keyrotationpolicies"),
            ("update", "jwks.dev", "keyrotationpolicies"),
            ("patch", "jwks.dev", "keyrotationpolicies"),
            ("delete", "jwks.dev", "keyrotationpolicies"),
            ("delete", "", "secrets"),
            ("delete", "", "configmaps"),
            ("get", "", "pods"),
            ("create", "", "serviceaccounts/token"),
            ("get", "", "serviceaccounts"),
            ("list", "", "namespaces"),
            ("update", "apps", "deployments"),
            ("bind", "rbac.authorization.k8s.io", "clusterroles"),
            ("escalate", "rbac.authorization.k8s.io", "roles"),
            ("impersonate", "", "users"),
            (
                "update",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
            ),
        ];
        for ns in namespaces {
            for (verb, group, resource) in forbidden {
                if self.can(verb, group, resource, ns, None).await {
                    mismatches.push(format!("{verb} {group}/{resource} in {ns:?} is allowed"));
                }
            }
        }
    }
}

#[tokio::test]
async fn cluster_wide_service_account_has_exactly_the_permissions_it_uses() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    let ns = cp.namespace(&admin, "chart-rbac").await;
    let other = cp.namespace(&admin, "chart-rbac-other").await;
    let release = install_chart(cp, &ns, &[]).await;
    assert_eq!(release.service_account, release.name);
    let lease = format!("{}-leader", release.name);
    assert!(
        release
            .operator_args()
            .contains(&format!("--leader-elect-lease-name={lease}"))
    );

    let access = Access {
        admin: &admin,
        release: &release,
    };
    let mut mismatches = Vec::new();
    for namespace in [other.as_str(), ns.as_str(), ""] {
        access
            .operator_matrix(namespace, true, &mut mismatches)
            .await;
    }
    access.lease_matrix(&lease, &other, &mut mismatches).await;
    access.never(&[&other, &ns, ""], &mut mismatches).await;
    assert!(
        mismatches.is_empty(),
        "RBAC differs from the contract:\n{}",
        mismatches.join("\n")
    );

    // The same, as real requests with the ServiceAccount's token.
    let sa = cp
        .service_account_client(&admin, &ns, &release.service_account)
        .await;
    Api::<KeyRotationPolicy>::all(sa.clone())
        .list(&Default::default())
        .await
        .expect("it lists policies cluster-wide");
    Api::<Secret>::namespaced(sa.clone(), &other)
        .list(&Default::default())
        .await
        .expect("it lists Secrets in any namespace");
    let denied = Api::<KeyRotationPolicy>::namespaced(sa, &other)
        .delete("anything", &Default::default())
        .await
        .expect_err("it cannot delete policies");
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied:?}"
    );
}

#[tokio::test]
async fn namespaced_service_account_reaches_only_the_watched_namespaces() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    let ns = cp.namespace(&admin, "chart-nsrbac").await;
    let team_a = cp.namespace(&admin, "chart-team-a").await;
    let team_b = cp.namespace(&admin, "chart-team-b").await;
    let outside = cp.namespace(&admin, "chart-outside").await;
    let watch = format!("{{{team_a},{team_b}}}");
    let release = install_chart(cp, &ns, &[("watchNamespaces", &watch)]).await;
    let args = release.operator_args();
    assert!(
        args.contains(&format!("--namespace={team_a}"))
            && args.contains(&format!("--namespace={team_b}"))
    );
    let lease = format!("{}-leader", release.name);

    let access = Access {
        admin: &admin,
        release: &release,
    };
    let mut mismatches = Vec::new();
    access.operator_matrix(&team_a, true, &mut mismatches).await;
    access.operator_matrix(&team_b, true, &mut mismatches).await;
    // Not in a namespace it does not watch, not its own, not cluster-wide.
    access
        .operator_matrix(&outside, false, &mut mismatches)
        .await;
    access.operator_matrix(&ns, false, &mut mismatches).await;
    access.operator_matrix("", false, &mut mismatches).await;
    access.lease_matrix(&lease, &team_a, &mut mismatches).await;
    access
        .never(&[&team_a, &outside, &ns, ""], &mut mismatches)
        .await;
    assert!(
        mismatches.is_empty(),
        "RBAC differs from the contract:\n{}",
        mismatches.join("\n")
    );

    // As real requests: Secrets in a watched namespace yes, elsewhere no.
    let sa = cp
        .service_account_client(&admin, &ns, &release.service_account)
        .await;
    Api::<Secret>::namespaced(sa.clone(), &team_a)
        .list(&Default::default())
        .await
        .expect("Secrets in a watched namespace");
    for forbidden in [
        Api::<Secret>::namespaced(sa.clone(), &outside)
            .list(&Default::default())
            .await
            .map(drop),
        Api::<Secret>::all(sa.clone())
            .list(&Default::default())
            .await
            .map(drop),
    ] {
        let err = forbidden.expect_err("Secrets outside the watched namespaces");
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 403),
            "{err:?}"
        );
    }
}

// === the operator as the chart runs it (needs `jwks-operator run`) ===

/// A plain HTTP/1.1 GET on 127.0.0.1 (no client dependency needed).
async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Kills the operator process when the test ends, however it ends.
struct KillOnDrop(tokio::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[test]
fn every_flag_the_chart_passes_is_accepted_by_the_binary() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "`jwks-operator run --help` failed");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut all_args = BTreeSet::new();
    for (_, values) in combinations() {
        all_args.extend(args(&render(RELEASE, NS, &values)));
    }
    for arg in all_args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(flag),
            "the chart passes {flag}, which `run --help` does not list"
        );
    }
}

#[tokio::test]
async fn operator_runs_as_the_charts_service_account() {
    // The default values: cluster-wide RBAC, leader election through the Lease.
    operator_as_the_chart_runs_it_makes_a_policy_ready(false).await;
}

#[tokio::test]
async fn operator_runs_as_the_charts_service_account_in_namespaced_mode() {
    // Roles only in the watched namespace: the operator's watches must stay in it.
    operator_as_the_chart_runs_it_makes_a_policy_ready(true).await;
}

/// Installs the chart, runs the binary as its ServiceAccount with its
/// arguments (listen addresses aside), applies the example policy and waits
/// for Ready, the key Secret, the JWKS route, probes, metrics and the Lease:
/// the chart's RBAC is sufficient.
async fn operator_as_the_chart_runs_it_makes_a_policy_ready(namespaced: bool) {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    let ns = cp.namespace(&admin, "chart-e2e").await;
    let apps = cp.namespace(&admin, "chart-e2e-apps").await;
    let watch = format!("{{{apps}}}");
    let values: Vec<(&str, &str)> = if namespaced {
        vec![("watchNamespaces", watch.as_str())]
    } else {
        vec![]
    };
    let release = install_chart(cp, &ns, &values).await;
    assert_eq!(
        release.object("ClusterRole").is_none(),
        namespaced,
        "namespaced mode has no ClusterRole"
    );
    let kubeconfig = release.service_account_kubeconfig(cp).await;
    let (jwks, metrics) = (free_addr(), free_addr());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .args(release.operator_args_listening_on(&jwks, &metrics, None))
        .env("KUBECONFIG", &kubeconfig)
        .envs(release.operator_env("jwks-operator-e2e-0"))
        .kill_on_drop(true)
        .spawn()
        .expect("start jwks-operator");
    let mut operator = KillOnDrop(child);

    let policy: KeyRotationPolicy =
        jwks_operator::yaml::from_str(include_str!("../examples/keyrotationpolicy.yaml")).unwrap();
    let policies: Api<KeyRotationPolicy> = Api::namespaced(admin.clone(), &apps);
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = policies.get("my-app").await.unwrap();
        let ready = current
            .status
            .as_ref()
            .map(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .unwrap_or(false);
        if ready {
            break;
        }
        if let Some(exit) = operator.0.try_wait().unwrap() {
            panic!("jwks-operator exited ({exit}) before the policy was Ready");
        }
        assert!(
            Instant::now() < deadline,
            "policy not Ready in 60s: {:?}",
            current.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let secret = Api::<Secret>::namespaced(admin.clone(), &apps)
        .get("my-app-jwks")
        .await
        .expect("the key Secret exists");
    assert!(secret.data.unwrap().contains_key("jwks.json"));
    // Ready may come from the other test's cluster-wide operator (same test
    // binary) before this one's watch has the Secret: wait for it to serve.
    let path = format!("/{apps}/my-app/.well-known/jwks.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = http_get(&jwks, &path)
            .await
            .expect("the JWKS listener answers");
        if status == 200 {
            break body;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "{status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let set: Value = serde_json::from_str(&body).unwrap();
    assert!(!set["keys"].as_array().unwrap().is_empty());
    // The probes' paths on the port the chart's probes use.
    assert_eq!(http_get(&metrics, "/readyz").await.unwrap().0, 200);
    assert_eq!(http_get(&metrics, "/healthz").await.unwrap().0, 200);
    assert_eq!(http_get(&metrics, "/metrics").await.unwrap().0, 200);
    // Metrics and the full /policies stay off the exposed JWKS port.
    assert_eq!(http_get(&jwks, "/metrics").await.unwrap().0, 404);
    let (status, public) = http_get(&jwks, "/policies").await.unwrap();
    assert_eq!(status, 200);
    assert!(!public.contains("tokenEndpoint"), "{public}");
    let (status, full) = http_get(&metrics, "/policies").await.unwrap();
    assert_eq!(status, 200);
    assert!(full.contains("tokenEndpoint"), "{full}");
    // Leader election used the chart's Lease, in the release namespace. Wait
    // for its holder: the cluster-wide test's operator, in this same test
    // binary, watches every namespace and may have made this policy Ready
    // before this operator took its Lease.
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin, &ns);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lease = leases
            .get(&format!("{}-leader", release.name))
            .await
            .expect("the leader-election Lease exists");
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        if holder == "jwks-operator-e2e-0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Lease has no holder after 20s (holder {holder:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
