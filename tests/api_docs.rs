//! `docs/api.md`, the API reference, is generated from the CRD schema (whose
//! descriptions are the Rust doc comments), so it cannot drift from the API.
//! Regenerate with `JWKS_REGENERATE=1 cargo test --test api_docs`.

use serde_json::Value;

const COMMITTED: &str = include_str!("../docs/api.md");

fn type_of(node: &Value) -> String {
    let base = node["type"].as_str().unwrap_or("object");
    let mut t = match base {
        "array" => format!("[]{}", node["items"]["type"].as_str().unwrap_or("object")),
        "integer" | "string" | "boolean" | "object" => base.to_owned(),
        other => other.to_owned(),
    };
    if let Some(values) = node["enum"].as_array() {
        let list: Vec<String> = values
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        t = format!("{t}: {}", list.join(", "));
    }
    t
}

/// The schema's own limits on a field (what the API server checks besides
/// its type, enum and CEL rules): bounds, item and length limits, pattern.
fn limits(node: &Value) -> String {
    let num = |key: &str| {
        node[key].as_f64().map(|v| {
            if v.fract() == 0.0 {
                format!("{}", v as i64)
            } else {
                v.to_string()
            }
        })
    };
    let mut out = Vec::new();
    // `minimum: 0` only restates an unsigned type.
    match (num("minimum").filter(|m| m != "0"), num("maximum")) {
        (Some(min), Some(max)) => out.push(format!("{min}–{max}")),
        (Some(min), None) => out.push(format!("≥ {min}")),
        (None, Some(max)) => out.push(format!("≤ {max}")),
        (None, None) => {}
    }
    match (num("minItems"), num("maxItems")) {
        (Some(min), Some(max)) => out.push(format!("{min}–{max} items")),
        (Some(min), None) => out.push(format!("≥ {min} items")),
        (None, Some(max)) => out.push(format!("≤ {max} items")),
        (None, None) => {}
    }
    match (num("minLength"), num("maxLength")) {
        (Some(min), Some(max)) => out.push(format!("{min}–{max} characters")),
        (Some(min), None) => out.push(format!("≥ {min} characters")),
        (None, Some(max)) => out.push(format!("≤ {max} characters")),
        (None, None) => {}
    }
    if let Some(p) = node["pattern"].as_str() {
        out.push(format!("pattern `{p}`"));
    }
    out.join(", ")
}

fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

fn rows(prefix: &str, node: &Value, required: &[&str], out: &mut String) {
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    for (name, child) in props {
        let path = format!("{prefix}{name}");
        let default = child
            .get("default")
            .map(|d| {
                format!(
                    "`{}`",
                    d.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| d.to_string())
                )
            })
            .unwrap_or_default();
        let req = if required.contains(&name.as_str()) {
            "yes"
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{path}` | {} | {default} | {req} | {} | {} |\n",
            cell(&type_of(child)),
            cell(&limits(child)),
            cell(child["description"].as_str().unwrap_or(""))
        ));
        let child_required: Vec<&str> = child["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if child["type"] == "object" {
            rows(&format!("{path}."), child, &child_required, out);
        } else if child["type"] == "array" && child["items"]["type"] == "object" {
            let item_required: Vec<&str> = child["items"]["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            rows(&format!("{path}[]."), &child["items"], &item_required, out);
        }
    }
}

fn rules(node: &Value, path: &str, out: &mut String) {
    if let Some(list) = node["x-kubernetes-validations"].as_array() {
        for r in list {
            out.push_str(&format!(
                "- `{}`: {} (`{}`)\n",
                if path.is_empty() { "spec" } else { path },
                r["message"].as_str().unwrap_or(""),
                r["rule"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            rules(
                child,
                &format!("spec.{}", p.trim_start_matches("spec.")),
                out,
            );
        }
    }
}

fn generate() -> String {
    let crd: Value = jwks_operator::yaml::from_str(&jwks_operator::api::crd_yaml()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let mut out = String::from(
        "<!-- Generated from the CRD schema by tests/api_docs.rs; do not edit by hand.\n     Regenerate: JWKS_REGENERATE=1 cargo test --test api_docs -->\n",
    );
    out.push_str("# API reference: `KeyRotationPolicy` (`jwks.dev/v1alpha1`)\n\n");
    out.push_str(&format!(
        "{}\n\nNamespaced; short name `krp`. Durations are Go/Kubernetes durations (`90s`, `15m`, `1h30m`).\n\n",
        schema["description"].as_str().unwrap_or("")
    ));
    out.push_str(
        "## spec\n\nEvery rule the API server checks is here: the type, enum and `limits` columns (the OpenAPI schema) and the CEL rules below; `jwks-operator standalone` applies the same ones to policy files. Object names (the policy's, `secretName`, `publicConfigMap`) are also held to Kubernetes' DNS-subdomain rule.\n\n| field | type | default | required | limits | description |\n|---|---|---|---|---|---|\n",
    );
    rows("", &schema["properties"]["spec"], &[], &mut out);
    out.push_str("\n### Validation at admission (CEL)\n\n");
    out.push_str("The API server refuses a policy that breaks one of these rules, with the message shown. `jwks-operator standalone` applies the same rules to policy files.\n\n");
    let mut r = String::new();
    // Rules on the whole object: transition rules, checked on update.
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        r.push_str(&format!(
            "- `{}` (on update): {} (`{}`)\n",
            rule["fieldPath"]
                .as_str()
                .unwrap_or(".")
                .trim_start_matches('.'),
            rule["message"].as_str().unwrap_or(""),
            rule["rule"].as_str().unwrap_or("")
        ));
    }
    rules(&schema["properties"]["spec"], "", &mut r);
    out.push_str(&r);
    out.push_str("\n## status\n\n| field | type | default | required | limits | description |\n|---|---|---|---|---|---|\n");
    rows("", &schema["properties"]["status"], &[], &mut out);
    out.push_str("\n## `kubectl get krp` columns\n\n| column | from |\n|---|---|\n");
    for c in version["additionalPrinterColumns"].as_array().unwrap() {
        out.push_str(&format!(
            "| {} | `{}` |\n",
            c["name"].as_str().unwrap(),
            c["jsonPath"].as_str().unwrap()
        ));
    }
    out.push_str("\n## Annotations\n\n`jwks.dev/rotate-requested-at: <any new value>` on a policy asks for a manual rotation; the handled value is echoed in `status.lastRotationRequest` (`jwks-operator rotate NAME -n NS` sets it).\n\n`jwks.dev/adopt: <policy name>` on an existing Secret that holds a private JWK Set lets that policy adopt it, when the policy names the Secret in `spec.secretName` (docs/kubernetes.md).\n");
    out
}

#[test]
fn the_api_reference_is_generated_from_the_crd() {
    let generated = generate();
    if std::env::var_os("JWKS_REGENERATE").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"),
            &generated,
        )
        .unwrap();
        return;
    }
    assert!(
        generated == COMMITTED,
        "docs/api.md is out of date; regenerate it with `JWKS_REGENERATE=1 cargo test --test api_docs`"
    );
    // The schema's limits are listed, not only the CEL rules.
    for (field, limit) in [
        ("maxKeys", "2–100"),
        ("revokedKeyIDs", "≤ 100 items"),
        ("audiences", "≤ 32 items"),
        ("secretName", "pattern `^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`"),
    ] {
        let row = generated
            .lines()
            .find(|l| l.starts_with(&format!("| `{field}` |")))
            .unwrap_or_else(|| panic!("{field} missing"));
        assert!(row.contains(limit), "{field}: {limit:?} not in {row}");
    }
    for field in [
        "algorithm",
        "rotationInterval",
        "publishAhead",
        "revokedKeyIDs",
        "tokenEndpoint.enabled",
    ] {
        assert!(
            generated.contains(&format!("| `{field}` |")),
            "{field} missing"
        );
    }
}
