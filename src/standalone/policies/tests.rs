//! Reading policy files: what `kubectl apply` would accept is accepted, the
//! rest is reported with file, document and field.

use std::fs;
use std::time::Duration;

use super::*;

const GOOD: &str = "apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: demo
spec:
  algorithm: ES256
  rotationInterval: 1h
";

fn read(files: &[(&str, &str)]) -> PolicyFiles {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    read_policies(dir.path()).unwrap()
}

fn only_bad(files: &PolicyFiles) -> &BadDocument {
    assert_eq!(files.bad.len(), 1, "{:#?}", files.bad);
    &files.bad[0]
}

fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata:\n  name: {name}\nspec: {spec}\n"
    )
}

#[test]
fn a_good_document_becomes_a_policy_in_the_default_namespace() {
    let files = read(&[("p.yaml", GOOD)]);
    assert!(files.bad.is_empty(), "{:?}", files.bad);
    let [doc] = files.policies.as_slice() else {
        panic!("one policy expected")
    };
    assert_eq!(
        (doc.namespace.as_str(), doc.name.as_str()),
        ("default", "demo")
    );
    assert_eq!(doc.policy.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(doc.resolved.rotation_interval, Duration::from_secs(3600));
    assert_eq!(doc.source.document, Some(1));
    assert!(doc.source.to_string().ends_with("p.yaml document 1"));
}

#[test]
fn a_bad_document_is_reported_and_the_others_are_kept() {
    let text = format!(
        "{GOOD}---\n{}---\n{}---\n{}",
        manifest("es", "{algorithm: ES256, keySize: 2048}"),
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {namespace: team-a}\nspec: {}\n",
        manifest("fine", "{algorithm: EdDSA}"),
    );
    let files = read(&[("many.yaml", &text)]);
    let names: Vec<&str> = files.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["demo", "fine"]);
    assert_eq!(files.bad.len(), 2, "{:#?}", files.bad);

    let es = &files.bad[0];
    assert_eq!(es.source.document, Some(2));
    assert_eq!(es.policy, Some(("default".into(), "es".into())));
    assert!(es.message.contains("keySize applies only to RSA"), "{es}");
    assert!(
        es.to_string()
            .contains("many.yaml document 2 (policy default/es)"),
        "{es}"
    );

    let nameless = &files.bad[1];
    assert_eq!(nameless.source.document, Some(3));
    assert_eq!(nameless.field.as_deref(), Some("metadata.name"));
    assert_eq!(nameless.policy, None);
}

#[test]
fn each_kind_of_mistake_names_its_field() {
    let cases = [
        (
            manifest("p", "{rotationIntervall: 1h}"),
            "spec.rotationIntervall",
            "unknown field",
        ),
        (
            manifest("p", "{tokenEndpoint: {enabeld: true}}"),
            "spec.tokenEndpoint.enabeld",
            "unknown field",
        ),
        (manifest("p", "{algorithm: HS256}"), "spec.algorithm", ""),
        (
            manifest("p", "{rotationInterval: 1h, publishAhead: 2h}"),
            "",
            "publishAhead must be shorter",
        ),
        (
            manifest("p", "{rotationInterval: soon}"),
            "spec",
            "is not a duration",
        ),
        (manifest("p", "{maxKeys: 1}"), "spec.maxKeys", ""),
        (
            manifest("Bad_Name", "{}"),
            "metadata.name",
            "not a valid object name",
        ),
        (
            GOOD.replace("v1alpha1", "v1"),
            "apiVersion",
            "jwks.dev/v1alpha1",
        ),
        (
            GOOD.replace("kind: KeyRotationPolicy\n", ""),
            "kind",
            "missing",
        ),
        (
            GOOD.replace("name: demo", "name: demo\n  namespace: Team_A"),
            "metadata.namespace",
            "",
        ),
    ];
    for (text, field, needle) in cases {
        let files = read(&[("p.yaml", &text)]);
        let bad = only_bad(&files);
        let shown = bad.to_string();
        if !field.is_empty() {
            assert!(
                bad.field.as_deref() == Some(field) || shown.contains(field),
                "expected field {field} in {shown}"
            );
        }
        assert!(shown.contains(needle), "expected {needle:?} in {shown}");
        assert!(files.policies.is_empty());
    }
}

#[test]
fn directories_contribute_their_yaml_files_in_name_order() {
    let files = read(&[
        ("b.yml", &manifest("b", "{algorithm: ES256}")),
        ("a.yaml", &manifest("a", "{algorithm: ES256}")),
        ("c.txt", &manifest("c", "{algorithm: ES256}")),
        (".hidden.yaml", &manifest("h", "{algorithm: ES256}")),
    ]);
    let names: Vec<&str> = files.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn a_policy_defined_twice_keeps_the_first() {
    let files = read(&[
        ("a.yaml", &manifest("p", "{algorithm: ES256}")),
        ("b.yaml", &manifest("p", "{algorithm: EdDSA}")),
    ]);
    assert_eq!(files.policies.len(), 1);
    assert!(files.policies[0].source.file.ends_with("a.yaml"));
    let bad = only_bad(&files);
    assert!(bad.message.contains("already defined in"), "{bad}");
    assert!(bad.source.file.ends_with("b.yaml"));
}

#[test]
fn other_kinds_and_empty_documents_are_skipped() {
    let text =
        format!("---\n{GOOD}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n");
    let files = read(&[("mixed.yaml", &text)]);
    assert_eq!(files.policies.len(), 1);
    assert!(files.bad.is_empty(), "{:?}", files.bad);
    assert_eq!(files.skipped.len(), 1);
    assert_eq!(files.skipped[0].1, "ConfigMap");
}

#[test]
fn a_yaml_syntax_error_is_reported_with_its_document() {
    let text = format!("{GOOD}---\nkind: [unclosed\n");
    let files = read(&[("broken.yaml", &text)]);
    assert_eq!(files.policies.len(), 1);
    let bad = only_bad(&files);
    assert_eq!(bad.source.document, Some(2));
    assert!(bad.message.contains("not valid YAML"), "{bad}");
}

#[test]
fn the_rotation_annotation_and_revocations_reach_the_planner() {
    let text = "apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: demo
  namespace: auth
  annotations:
    jwks.dev/rotate-requested-at: \"2026-11-24T10:00:00Z\"
spec:
  algorithm: ES256
  revokedKeyIDs: [abc]
";
    let files = read(&[("p.yaml", text)]);
    let doc = &files.policies[0];
    assert_eq!(doc.namespace, "auth");
    assert_eq!(
        doc.resolved.rotation_request.as_deref(),
        Some("2026-11-24T10:00:00Z")
    );
    assert!(doc.resolved.revoked.contains("abc"));
}

#[test]
fn a_single_file_can_be_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.yaml");
    fs::write(&path, GOOD).unwrap();
    assert_eq!(read_policies(&path).unwrap().policies.len(), 1);
    let err = read_policies(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}
