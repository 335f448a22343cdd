//! The operations kit: the chart's PrometheusRule and Grafana dashboard,
//! checked with Prometheus' own tools (`promtool` and its PromQL parser,
//! built from the Go module proxy by tests/controlplane/build-prometheus.sh)
//! and against a real operator's `/metrics`.
//!
//! - `promtool check rules` accepts the rendered rules, and `promtool test
//!   rules` (tests/monitoring/alerts.test.yaml) fires and silences every alert
//!   on synthetic series;
//! - every alert has a severity, names the policy where there is one, and
//!   links to a runbook section that exists in docs/operations.md;
//! - every dashboard expression parses, and the panels the docs promise exist;
//! - every metric and label the rules and the dashboard use is exported by a
//!   running `jwks-operator standalone`.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::helm::{chart_dir, render, run};

const RELEASE: &str = "jwks-operator";
const NS: &str = "jwks-system";

/// Alerts about one policy: they must carry `namespace` and `name`.
const POLICY_ALERTS: &[&str] = &[
    "JwksPolicyDegraded",
    "JwksRotationOverdue",
    "JwksPendingKeyNotActivated",
    "JwksReconcileErrors",
    "JwksNotReady",
    "JwksPublicationStale",
];
/// Alerts about the operator as a whole.
const OPERATOR_ALERTS: &[&str] = &[
    "JwksKeyGenerationFailing",
    "JwksNoLeader",
    "JwksServerErrors",
    "JwksOperatorAbsent",
];

fn promtool() -> Command {
    Command::new(support::prometheus::tool("promtool"))
}

/// The rendered PrometheusRule (default values plus `values`).
fn prometheus_rule(values: &[(&str, &str)]) -> Value {
    let mut all = vec![("metrics.prometheusRule.enabled", "true")];
    all.extend_from_slice(values);
    render(RELEASE, NS, &all)
        .into_iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the chart renders a PrometheusRule")
}

fn rules_of(rule: &Value) -> Vec<Value> {
    rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// Writes the rule's groups as a Prometheus rule file in `dir`.
fn write_rule_file(dir: &Path, rule: &Value) -> PathBuf {
    let path = dir.join("rules.yaml");
    let groups = serde_json::json!({"groups": rule["spec"]["groups"]});
    std::fs::write(&path, jwks_operator::yaml::to_string(&groups).unwrap()).unwrap();
    path
}

/// Runs the `selectors` tool: for each expression, its parse error or its
/// series selectors (metric, label names) and grouping labels.
fn selectors(exprs: &[String]) -> Vec<Value> {
    use std::io::Write as _;
    let mut child = Command::new(support::prometheus::tool("selectors"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run selectors");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(exprs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "selectors failed");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("files/dashboard.json")).unwrap(),
    )
    .expect("files/dashboard.json is JSON")
}

/// Every PromQL expression of the dashboard, with Grafana's variables
/// replaced by values of the same type (`$__rate_interval` → `5m`,
/// `$job` → `.*`), and the selector inside each `label_values(...)` query.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    fn panels(v: &Value, out: &mut Vec<String>) {
        for p in v.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(
                    t["expr"]
                        .as_str()
                        .expect("every target has expr")
                        .to_owned(),
                );
            }
            panels(&p["panels"], out);
        }
    }
    let mut raw = Vec::new();
    panels(&d["panels"], &mut raw);
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(sel, _)| sel.to_owned())
            .unwrap_or_else(|| {
                panic!("variable query {q} is not label_values(<selector>, <label>)")
            });
        raw.push(inner);
    }
    raw.into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$job", ".*")
                .replace("$namespace", ".*")
                .replace("$policy", ".*")
        })
        .collect()
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn promtool_accepts_the_rendered_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_rule_file(dir.path(), &prometheus_rule(&[]));
    let out = run(promtool().args(["check", "rules"]).arg(&file));
    assert!(out.is_ok(), "{}", out.unwrap_err());
    // The control: a broken expression is refused.
    let mut broken = prometheus_rule(&[]);
    broken["spec"]["groups"][0]["rules"][0]["expr"] = "max by (namespace (x)".into();
    let file = write_rule_file(dir.path(), &broken);
    assert!(run(promtool().args(["check", "rules"]).arg(&file)).is_err());
}

#[test]
fn every_alert_fires_and_stays_silent_in_promtool_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    let rule = prometheus_rule(&[]);
    write_rule_file(dir.path(), &rule);
    let tests_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/monitoring/alerts.test.yaml");
    let tests_file = dir.path().join("alerts.test.yaml");
    std::fs::copy(&tests_src, &tests_file).unwrap();
    let out = run(promtool().args(["test", "rules"]).arg(&tests_file));
    assert!(out.is_ok(), "promtool test rules:\n{}", out.unwrap_err());

    // Every alert is covered both ways.
    let tests: Value =
        jwks_operator::yaml::from_str(&std::fs::read_to_string(&tests_src).unwrap()).unwrap();
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_array().unwrap() {
        for t in case["alert_rule_test"].as_array().unwrap() {
            let name = t["alertname"].as_str().unwrap().to_owned();
            if t["exp_alerts"].as_array().unwrap().is_empty() {
                silent.insert(name);
            } else {
                fired.insert(name);
            }
        }
    }
    let alerts: BTreeSet<String> = rules_of(&rule)
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        alerts,
        POLICY_ALERTS
            .iter()
            .chain(OPERATOR_ALERTS)
            .map(|s| s.to_string())
            .collect(),
        "the alert list changed: update POLICY_ALERTS/OPERATOR_ALERTS, the tests and the runbooks"
    );
    for a in &alerts {
        assert!(fired.contains(a), "{a} is never shown to fire");
        assert!(silent.contains(a), "{a} is never shown to stay silent");
    }

    // The control: a rule that no longer fires fails promtool's tests.
    let mut weakened = rule.clone();
    weakened["spec"]["groups"][0]["rules"][0]["expr"] =
        "max by (namespace, name) (jwks_operator_policy_degraded) == 2".into();
    write_rule_file(dir.path(), &weakened);
    assert!(run(promtool().args(["test", "rules"]).arg(&tests_file)).is_err());
}

#[test]
fn every_alert_has_a_severity_names_its_policy_and_links_to_its_runbook() {
    let operations =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect();
    let rule = prometheus_rule(&[]);
    let rules = rules_of(&rule);
    let parsed = selectors(
        &rules
            .iter()
            .map(|r| r["expr"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
    );
    for (r, p) in rules.iter().zip(&parsed) {
        let name = r["alert"].as_str().unwrap();
        assert!(
            ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity {}",
            r["labels"]["severity"]
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let expected = format!(
            "https://github.com/jwks-operator/jwks-operator/blob/main/docs/operations.md#{}",
            name.to_lowercase()
        );
        assert_eq!(url, expected, "{name}");
        assert!(
            anchors.contains(&name.to_lowercase()),
            "{name}: docs/operations.md has no '### {name}' runbook section"
        );
        // Every selector is limited to this release's job.
        for s in p["selectors"].as_array().unwrap() {
            assert!(
                s["labels"].as_array().unwrap().contains(&"job".into()),
                "{name}: a selector without the job matcher: {}",
                r["expr"]
            );
        }
        if POLICY_ALERTS.contains(&name) {
            let grouping = p["grouping"].as_array().unwrap();
            for label in ["namespace", "name"] {
                assert!(
                    grouping.contains(&label.into()),
                    "{name} does not keep the policy's {label}: {}",
                    r["expr"]
                );
            }
            let summary = r["annotations"]["summary"].as_str().unwrap();
            assert!(
                summary.contains("{{ $labels.namespace }}/{{ $labels.name }}"),
                "{name}: the summary does not name the policy: {summary}"
            );
        }
    }
}

#[test]
fn prometheus_rule_values_render_where_expected() {
    // Off by default.
    assert!(
        !render(RELEASE, NS, &[])
            .iter()
            .any(|o| o["kind"] == "PrometheusRule" || o["kind"] == "ConfigMap")
    );
    let rule = prometheus_rule(&[
        ("metrics.prometheusRule.labels.release", "kube-prometheus"),
        (
            "metrics.prometheusRule.selector",
            "job=\"jwks\"\\,cluster=\"eu\"",
        ),
        ("metrics.prometheusRule.leaseDurationSeconds", "60"),
        ("metrics.prometheusRule.degradedFor", "1h"),
        (
            "metrics.prometheusRule.runbookUrl",
            "https://wiki.example.com/jwks",
        ),
        ("metrics.prometheusRule.extraRules[0].alert", "MyOwn"),
        ("metrics.prometheusRule.extraRules[0].expr", "vector(1)"),
    ]);
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(rule["metadata"]["namespace"], NS);
    let rules = rules_of(&rule);
    let by_name = |n: &str| rules.iter().find(|r| r["alert"] == n).unwrap().clone();
    assert_eq!(
        by_name("JwksNoLeader")["for"],
        "120s",
        "two lease durations"
    );
    assert_eq!(by_name("JwksPolicyDegraded")["for"], "1h");
    assert_eq!(
        by_name("JwksPolicyDegraded")["expr"],
        "max by (namespace, name) (jwks_operator_policy_degraded{job=\"jwks\",cluster=\"eu\"}) == 1"
    );
    assert_eq!(
        by_name("JwksOperatorAbsent")["annotations"]["runbook_url"],
        "https://wiki.example.com/jwks#jwksoperatorabsent"
    );
    assert_eq!(by_name("MyOwn")["expr"], "vector(1)");
    // The default selector is the ServiceMonitor's job: the metrics Service.
    let default = prometheus_rule(&[]);
    assert!(
        rules_of(&default)[0]["expr"]
            .as_str()
            .unwrap()
            .contains("{job=\"jwks-operator-metrics\"}")
    );
}

#[test]
fn the_dashboard_configmap_carries_the_dashboard_for_the_grafana_sidecar() {
    let objects = render(RELEASE, NS, &[("metrics.dashboard.enabled", "true")]);
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("a dashboard ConfigMap");
    assert_eq!(cm["metadata"]["name"], "jwks-operator-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(cm["data"]["jwks-operator.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard());
    // Labels are replaceable (another sidecar label), annotations added.
    let objects = render(
        RELEASE,
        NS,
        &[
            ("metrics.dashboard.enabled", "true"),
            ("metrics.dashboard.labels.grafana_dashboard", "null"),
            ("metrics.dashboard.labels.dashboards", "jwks"),
            ("metrics.dashboard.annotations.grafana_folder", "Identity"),
        ],
    );
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["labels"]["dashboards"], "jwks");
    assert!(cm["metadata"]["labels"].get("grafana_dashboard").is_none());
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Identity");
}

#[test]
fn every_dashboard_expression_parses_and_the_promised_panels_exist() {
    let d = dashboard();
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 15, "{exprs:?}");
    let parsed = selectors(&exprs);
    for p in &parsed {
        assert!(
            p.get("error").is_none(),
            "dashboard expression does not parse: {} ({})",
            p["expr"],
            p["error"]
        );
    }
    // The control: the parser does refuse nonsense.
    let bad = selectors(&["sum by (le (rate(x[5m]))".to_owned()]);
    assert!(bad[0].get("error").is_some(), "{bad:?}");

    let titles: BTreeSet<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect();
    for promised in [
        "Keys by state per policy",
        "Time to next rotation",
        "Time to next prune",
        "Rotations by reason",
        "Reconcile rate",
        "Reconcile errors",
        "Reconcile duration",
        "Key generation time",
        "JWKS requests",
        "304 share of JWK Set requests",
        "Leader",
        "Age of the last publication confirmation",
    ] {
        assert!(
            titles.contains(promised),
            "no panel {promised:?}: {titles:?}"
        );
    }
    // Panel ids are unique (Grafana keys panels by id).
    let ids: Vec<i64> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len());
}

/// Parses OpenMetrics text into metric sample name → label names seen.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let labels = out.entry(name.to_owned()).or_default();
        if let Some(body) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for pair in body.0.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_owned());
                }
            }
        }
    }
    out
}

/// Checks every selector of `parsed` against a scrape: the metric exists and
/// has every label matched on (apart from the target labels Prometheus adds).
fn check_against_scrape(
    what: &str,
    parsed: &[Value],
    scraped: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    const TARGET_LABELS: &[&str] = &["job", "instance"];
    let mut problems = Vec::new();
    for p in parsed {
        assert!(p.get("error").is_none(), "{what}: {p}");
        for s in p["selectors"].as_array().unwrap() {
            let metric = s["metric"].as_str().unwrap();
            if metric == "up" {
                continue; // Prometheus' own series for every target
            }
            let Some(labels) = scraped.get(metric) else {
                problems.push(format!("{what}: {metric} is not exported ({})", p["expr"]));
                continue;
            };
            for l in s["labels"].as_array().unwrap() {
                let l = l.as_str().unwrap();
                if !TARGET_LABELS.contains(&l) && !labels.contains(l) {
                    problems.push(format!("{what}: {metric} has no label {l} ({})", p["expr"]));
                }
            }
        }
        // Grouping labels must exist on some selected metric too.
        for g in p["grouping"].as_array().unwrap() {
            let g = g.as_str().unwrap();
            let on_some = p["selectors"].as_array().unwrap().iter().any(|s| {
                scraped
                    .get(s["metric"].as_str().unwrap())
                    .is_some_and(|ls| ls.contains(g))
            });
            if !TARGET_LABELS.contains(&g) && !on_some {
                problems.push(format!(
                    "{what}: groups by {g}, which no selected metric has ({})",
                    p["expr"]
                ));
            }
        }
    }
    problems
}

/// [`check_against_scrape`] for every expression of the chart's
/// PrometheusRule and of the dashboard.
fn rules_and_dashboard_against_scrape(scraped: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let rule = prometheus_rule(&[]);
    let rule_exprs: Vec<String> = rules_of(&rule)
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    let mut problems = check_against_scrape("rules", &selectors(&rule_exprs), scraped);
    problems.extend(check_against_scrape(
        "dashboard",
        &selectors(&dashboard_exprs(&dashboard())),
        scraped,
    ));
    problems
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_exported_by_a_running_operator() {
    use common::{Operator, Workspace, eventually, manifest};
    let ws = Workspace::new();
    ws.write_policy(
        "p.yaml",
        &[
            // Rotates every 4 s, publishing 2 s ahead: a pending key, then a
            // retired one (next prune) appear within seconds.
            manifest(
                "fast",
                "",
                "  algorithm: EdDSA\n  rotationInterval: 4s\n  publishAhead: 2s\n  maxTokenTTL: 60s\n",
            ),
            manifest("broken", "", "  algorithm: ES256\n"),
            // A copy in a directory (spec.publish): confirmation series.
            manifest(
                "published",
                "",
                &format!(
                    "  algorithm: ES256\n  publish:\n  - url: file://{}\n",
                    ws.dir.path().join("copy").display()
                ),
            ),
        ]
        .join("---\n"),
    );
    // `broken` starts with a state it cannot read: Degraded, not ready.
    let op = Operator::start(&ws.policies(), &ws.state());
    eventually("broken has a key", Duration::from_secs(10), || {
        (op.get("/default/broken/.well-known/jwks.json").status == 200).then_some(())
    });
    assert!(op.stop().success());
    std::fs::write(
        ws.policy_state("default/broken").join("lifecycle.json"),
        b"garbage",
    )
    .unwrap();
    let op = Operator::start(&ws.policies(), &ws.state());
    assert_eq!(op.get("/default/broken/.well-known/jwks.json").status, 503);

    let scraped = eventually(
        "a scrape with pending, retired and not-ready series",
        Duration::from_secs(30),
        || {
            let text = op.get("/metrics").text();
            let wanted = [
                "jwks_operator_pending_activation_timestamp_seconds{",
                "jwks_operator_next_prune_timestamp_seconds{",
                "jwks_operator_policy_not_ready_total{namespace=\"default\",name=\"broken\"} 1",
                "jwks_operator_policy_degraded{namespace=\"default\",name=\"broken\"} 1",
                "\njwks_operator_leader 1\n",
                "jwks_operator_publication_confirmed_timestamp_seconds{",
            ];
            wanted.iter().all(|w| text.contains(w)).then_some(text)
        },
    );
    let samples = exposition(&scraped);
    let problems = rules_and_dashboard_against_scrape(&samples);
    // The control: a misspelt metric and a missing label are reported.
    let control = check_against_scrape(
        "control",
        &selectors(&[
            "jwks_operator_keyz".to_owned(),
            "jwks_operator_leader{name=\"x\"}".to_owned(),
        ]),
        &samples,
    );
    assert_eq!(control.len(), 2, "{control:?}");
    assert!(
        problems.is_empty(),
        "{}\n\nscrape:\n{scraped}",
        problems.join("\n")
    );
    drop(op);
}

/// The same check against `jwks-operator run` on the real control plane (as
/// the chart's ServiceAccount): the Kubernetes adapter exports the same
/// series, with the same labels.
#[tokio::test]
async fn the_kubernetes_operator_exports_the_same_series() {
    use support::operator::{TestEnv, http_get};
    let env = TestEnv::new("monitoring").await;
    let op = env.operator(&[]);
    env.create(
        "fast",
        serde_json::json!({
            "algorithm": "EdDSA", "rotationInterval": "4s", "publishAhead": "2s", "maxTokenTTL": "60s"
        }),
    )
    .await;
    // A policy whose Secret gets damaged: Degraded, with reconcile errors.
    env.create("broken", serde_json::json!({"algorithm": "ES256"}))
        .await;
    let secrets = env.secrets();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while secrets.get_opt("broken-jwks").await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no Secret broken-jwks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    secrets
        .patch(
            "broken-jwks",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"stringData": {"lifecycle.json": "garbage"}}),
            ),
        )
        .await
        .expect("damage the Secret");
    let url = format!("{}/metrics", op.jwks);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let (status, text) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || http_get(&url)
        })
        .await
        .unwrap();
        let wanted = [
            "jwks_operator_pending_activation_timestamp_seconds{",
            "jwks_operator_next_prune_timestamp_seconds{",
            "jwks_operator_policy_not_ready_total{",
            "\njwks_operator_leader 1\n",
            "jwks_operator_reconcile_errors_total{",
        ];
        if status == 200 && wanted.iter().all(|w| text.contains(w)) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator never exported {wanted:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let samples = exposition(&scraped);
    // The controller does not publish to object storage yet
    // (docs/publication.md, "Not done yet"): its publication series exist
    // only in standalone mode, which the test above scrapes.
    let problems: Vec<String> = rules_and_dashboard_against_scrape(&samples)
        .into_iter()
        .filter(|p| !p.contains("jwks_operator_publication_"))
        .collect();
    assert!(
        problems.is_empty(),
        "{}\n\nscrape:\n{scraped}",
        problems.join("\n")
    );
}
