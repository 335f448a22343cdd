//! The committed CRD is exactly what `jwks-operator crd` prints, and it is a
//! structural schema a real API server accepts.

use jwks_operator::api;

const COMMITTED: &str = include_str!("../crds/keyrotationpolicies.jwks.dev.yaml");
const REGENERATE: &str = "cargo run -q -- crd > crds/keyrotationpolicies.jwks.dev.yaml";

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = api::crd_yaml();
    if generated != COMMITTED {
        let first_difference = generated
            .lines()
            .zip(COMMITTED.lines())
            .enumerate()
            .find(|(_, (g, c))| g != c)
            .map(|(i, (g, c))| format!("line {}: generated {g:?}, committed {c:?}", i + 1))
            .unwrap_or_else(|| "the files differ in length".into());
        panic!("crds/ is out of date ({first_difference}). Regenerate it with `{REGENERATE}`");
    }
}

#[test]
fn binary_prints_the_committed_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .arg("crd")
        .output()
        .expect("run jwks-operator crd");
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout).unwrap() == COMMITTED,
        "`jwks-operator crd` differs from crds/; regenerate with `{REGENERATE}`"
    );
}

fn walk<'a>(
    path: String,
    v: &'a serde_json::Value,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    out.push((path.clone(), v));
    if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
        for (name, child) in props {
            walk(format!("{path}.{name}"), child, out);
        }
    }
    if let Some(items) = v.get("items") {
        walk(format!("{path}[]"), items, out);
    }
}

#[test]
fn schema_is_structural_and_every_field_is_documented() {
    let crd: serde_json::Value = jwks_operator::yaml::from_str(COMMITTED).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut nodes = Vec::new();
    walk("".into(), schema, &mut nodes);
    assert!(nodes.len() > 30, "walked only {} nodes", nodes.len());
    for (path, node) in &nodes {
        for forbidden in [
            "$ref",
            "definitions",
            "$defs",
            "additionalItems",
            "patternProperties",
            "dependencies",
            "not",
        ] {
            assert!(node.get(forbidden).is_none(), "{path} uses {forbidden}");
        }
        // Structural: every node states its type (or is the int-or-string escape hatch).
        assert!(
            node.get("type").is_some() || node.get("x-kubernetes-int-or-string").is_some(),
            "{path} has no type"
        );
        if path.starts_with(".spec.") && !path.ends_with("[]") {
            assert!(
                node.get("description").is_some(),
                "{path} has no description"
            );
        }
    }
    let names = &crd["spec"]["names"];
    assert_eq!(names["shortNames"][0], "krp");
    assert_eq!(crd["spec"]["group"], "jwks.dev");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
    assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Algorithm",
            "Active Kid",
            "Keys",
            "Next Rotation",
            "Ready",
            "Age"
        ]
    );
}
