//! Reading `KeyRotationPolicy` manifests from files, as standalone mode's
//! source of policies.
//!
//! `--policies` is a file or a directory. A directory contributes its
//! `*.yaml` and `*.yml` files (not recursively, hidden files skipped, in name
//! order). Each file may hold several YAML documents separated by `---`.
//!
//! Every document is held to what `kubectl apply` would enforce, then to what
//! the operator checks itself:
//! 1. `apiVersion: jwks.dev/v1alpha1`, `kind: KeyRotationPolicy` (documents of
//!    other kinds are skipped, so a directory of mixed manifests works);
//! 2. `metadata.name` a valid object name, `metadata.namespace` a valid
//!    namespace name, `default` when absent;
//! 3. no unknown fields at the top level or under `spec` (kubectl's strict
//!    field validation), and
//!    every field of the right type and syntax (enum values, durations);
//! 4. the CRD's OpenAPI schema and CEL rules ([`validate_like_apiserver`]);
//! 5. [`KeyRotationPolicySpec::resolve`](crate::api::KeyRotationPolicySpec::resolve);
//! 6. a `namespace/name` defined only once across all files.
//!
//! A document failing any of these is a [`BadDocument`] naming the file, the
//! document's position (counted from 1, as an editor shows it) and, where
//! known, the field; the other documents are unaffected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use kube::CustomResourceExt as _;
use serde_json::Value;

use crate::api::{GROUP, KeyRotationPolicy, validate_like_apiserver};
use crate::keys::lifecycle::Policy;
use crate::names::{is_dns_label, is_dns_subdomain};

/// `apiVersion` of the documents read.
pub const API_VERSION: &str = "jwks.dev/v1alpha1";
/// `kind` of the documents read.
pub const KIND: &str = "KeyRotationPolicy";
/// The fields a manifest may have at the top level.
const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
/// Namespace of a policy document without `metadata.namespace`.
pub use crate::policy::DEFAULT_NAMESPACE;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// The file.
    pub file: PathBuf,
    /// Position of the document in the file, from 1; `None` for problems
    /// with the file as a whole.
    pub document: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(n) => write!(f, "{} document {n}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// A valid policy document.
#[derive(Clone, Debug)]
pub struct PolicyDoc {
    /// Where it was read.
    pub source: Source,
    /// The policy, with `metadata.namespace` filled in.
    pub policy: KeyRotationPolicy,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The planner's view of it (defaults applied, rotation request included).
    pub resolved: Policy,
}

/// A document that was rejected, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadDocument {
    /// Where it was read.
    pub source: Source,
    /// `(namespace, name)` if the document said which policy it is.
    pub policy: Option<(String, String)>,
    /// The field at fault (`spec.keySize`), when one is to blame.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for BadDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some((ns, name)) = &self.policy {
            write!(f, " (policy {ns}/{name})")?;
        }
        match &self.field {
            Some(field) => write!(f, ": {field}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

/// Everything read from `--policies`.
#[derive(Clone, Debug, Default)]
pub struct PolicyFiles {
    /// The valid policies, in file and document order.
    pub policies: Vec<PolicyDoc>,
    /// The rejected documents.
    pub bad: Vec<BadDocument>,
    /// Documents of other kinds that were skipped.
    pub skipped: Vec<(Source, String)>,
}

/// `--policies` itself cannot be read (missing, not a file or directory).
#[derive(Debug, thiserror::Error)]
#[error("cannot read policies from {}: {error}", path.display())]
pub struct ReadError {
    /// The path given.
    pub path: PathBuf,
    /// Why (part of the message, not chained).
    pub error: std::io::Error,
}

/// Reads and validates every policy document under `path`.
pub fn read_policies(path: &Path) -> Result<PolicyFiles, ReadError> {
    let err = |error| ReadError {
        path: path.to_owned(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(err)? {
            let entry = entry.map_err(err)?;
            let p = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if yaml && !name.starts_with('.') && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };

    let mut out = PolicyFiles::default();
    let mut seen: BTreeMap<(String, String), Source> = BTreeMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                out.bad.push(BadDocument {
                    source: Source {
                        file,
                        document: None,
                    },
                    policy: None,
                    field: None,
                    message: format!("cannot read the file: {e}"),
                });
                continue;
            }
        };
        add_text(&mut out, &mut seen, &file, &text);
    }
    Ok(out)
}

/// Validates the policy documents of one file's `text`, as [`read_policies`]
/// does for each file it reads. `file` only names the source in messages.
/// Pure: no file is read (the fuzz target `policy_yaml` drives it).
pub fn parse_policy_text(text: &str, file: &Path) -> PolicyFiles {
    let mut out = PolicyFiles::default();
    add_text(&mut out, &mut BTreeMap::new(), file, text);
    out
}

fn add_text(
    out: &mut PolicyFiles,
    seen: &mut BTreeMap<(String, String), Source>,
    file: &Path,
    text: &str,
) {
    for doc in crate::yaml::documents(text) {
        let source = Source {
            file: file.to_owned(),
            document: Some(doc.number),
        };
        match check_document(doc.value, &source) {
            Checked::Empty => {}
            Checked::OtherKind(kind) => out.skipped.push((source, kind)),
            Checked::Bad(bad) => out.bad.push(bad),
            Checked::Policy(doc) => {
                let key = (doc.namespace.clone(), doc.name.clone());
                if let Some(first) = seen.get(&key) {
                    out.bad.push(BadDocument {
                        source,
                        policy: Some(key.clone()),
                        field: Some("metadata.name".into()),
                        message: format!(
                            "policy {}/{} is already defined in {first}; this one is ignored",
                            key.0, key.1
                        ),
                    });
                } else {
                    seen.insert(key, source);
                    out.policies.push(*doc);
                }
            }
        }
    }
}

/// One document: parsed YAML as JSON-shaped data, or why it could not be read.
type RawDocument = Result<Value, String>;

enum Checked {
    Empty,
    OtherKind(String),
    Bad(BadDocument),
    Policy(Box<PolicyDoc>),
}

// Long on purpose: one document's checks in the order the module docs list them, each
// returning the first problem with its field.
fn check_document(doc: RawDocument, source: &Source) -> Checked {
    let bad = |policy: Option<(String, String)>, field: Option<&str>, message: String| {
        Checked::Bad(BadDocument {
            source: source.clone(),
            policy,
            field: field.map(str::to_owned),
            message,
        })
    };
    let mut json: Value = match doc {
        Ok(Value::Null) => return Checked::Empty,
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(_) => {
            return bad(
                None,
                None,
                "not a mapping (expected a KeyRotationPolicy manifest)".into(),
            );
        }
        Err(message) => return bad(None, None, message),
    };

    // Identity first, so later problems can name the policy.
    let name = json
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let namespace = match json.pointer("/metadata/namespace") {
        None | Some(Value::Null) => Some(DEFAULT_NAMESPACE.to_string()),
        Some(Value::String(ns)) => Some(ns.clone()),
        Some(_) => None,
    };
    let policy_id = match (&namespace, &name) {
        (Some(ns), Some(name)) if is_dns_label(ns) && is_dns_subdomain(name) => {
            Some((ns.clone(), name.clone()))
        }
        _ => None,
    };

    match json.get("kind").and_then(Value::as_str) {
        Some(KIND) => {}
        Some(other) => return Checked::OtherKind(other.to_string()),
        None => {
            return bad(
                policy_id,
                Some("kind"),
                format!("missing; expected {KIND:?}"),
            );
        }
    }
    match json.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        other => {
            return bad(
                policy_id,
                Some("apiVersion"),
                format!("{other:?} is not {API_VERSION:?} (group {GROUP})"),
            );
        }
    }
    let Some(name) = name else {
        return bad(None, Some("metadata.name"), "missing".into());
    };
    if !is_dns_subdomain(&name) {
        return bad(
            None,
            Some("metadata.name"),
            format!("{name:?} is not a valid object name (lowercase letters, digits, '-' and '.')"),
        );
    }
    let Some(namespace) = namespace.filter(|ns| is_dns_label(ns)) else {
        return bad(
            None,
            Some("metadata.namespace"),
            "is not a valid namespace name (lowercase letters, digits and '-', at most 63)".into(),
        );
    };
    json["metadata"]["namespace"] = Value::String(namespace.clone());
    if json.get("spec").is_none() {
        json["spec"] = Value::Object(Default::default());
    }

    if let Some(field) = json
        .as_object()
        .and_then(|o| o.keys().find(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str())))
    {
        return bad(policy_id, Some(field), "unknown field".into());
    }
    if let Some(field) = unknown_spec_field(&json) {
        return bad(policy_id, Some(&field), "unknown field".into());
    }
    let policy: KeyRotationPolicy = match serde_json::from_value(json.clone()) {
        Ok(p) => p,
        Err(e) => {
            let field = field_failing_alone(&json["spec"]).unwrap_or_else(|| "spec".into());
            return bad(policy_id, Some(&field), e.to_string());
        }
    };
    if let Err(errors) = validate_like_apiserver(&json) {
        let (field, message) = split_field(&errors.join("; "));
        return bad(policy_id, field.as_deref(), message);
    }
    let resolved = match policy.spec.resolve(policy.rotation_request()) {
        Ok(r) => r,
        Err(e) => return bad(policy_id, Some(&format!("spec.{}", e.field)), e.message),
    };
    Checked::Policy(Box::new(PolicyDoc {
        source: source.clone(),
        policy,
        namespace,
        name,
        resolved,
    }))
}

/// The schema check does not cover everything serde refuses (enum values,
/// duration syntax), and serde's message has no path: find the spec field
/// that fails to deserialize on its own.
fn field_failing_alone(spec: &Value) -> Option<String> {
    spec.as_object()?.iter().find_map(|(k, v)| {
        let alone = Value::Object([(k.clone(), v.clone())].into_iter().collect());
        serde_json::from_value::<crate::api::KeyRotationPolicySpec>(alone)
            .is_err()
            .then(|| format!("spec.{k}"))
    })
}

/// `"spec.keySize: message"` → (`spec.keySize`, `message`) when the text
/// starts with a field path.
fn split_field(text: &str) -> (Option<String>, String) {
    if let Some((path, rest)) = text.split_once(": ")
        && !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_'))
    {
        return (Some(path.to_string()), rest.to_string());
    }
    (None, text.to_string())
}

/// The first field under `spec` that the CRD schema does not define, as a
/// path (`spec.rotationIntervall`), the way `kubectl apply` (strict field
/// validation) refuses it.
fn unknown_spec_field(object: &Value) -> Option<String> {
    let crd = KeyRotationPolicy::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    let schema = serde_json::to_value(schema).ok()?;
    let spec_schema = schema.pointer("/properties/spec")?;
    unknown_field(object.get("spec")?, spec_schema, "spec")
}

fn unknown_field(value: &Value, schema: &Value, path: &str) -> Option<String> {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object)?;
            for (k, v) in map {
                match props.get(k) {
                    None => return Some(format!("{path}.{k}")),
                    Some(s) => {
                        if let Some(found) = unknown_field(v, s, &format!("{path}.{k}")) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        Value::Array(items) => {
            let item_schema = schema.get("items")?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, v)| unknown_field(v, item_schema, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
