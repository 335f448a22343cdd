//! YAML in and out, with one parser: serde-saphyr (the one kube-client
//! itself uses), in place of the deprecated serde_yaml.
//!
//! - [`documents`]: a file of several `---`-separated documents, each as
//!   JSON-shaped data with its position in the file (counted from 1, as an
//!   editor shows it), for the policy files of standalone mode and the signer.
//! - [`from_str`]: one document into a typed value.
//! - [`to_string`]: one value as YAML (the CRD that `jwks-operator crd` prints).
//!
//! The parser is held to YAML 1.2's core schema, as serde_yaml was: only
//! `true`/`false` are booleans (`yes`, `on` stay strings), a key given twice
//! is an error, and the parser's own budget bounds depth, size and aliases,
//! so a hostile file costs bounded time and memory. Errors are one line,
//! with the line and column, and never quote the input.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_saphyr::Spanned;

/// The parser's settings for every read: strict booleans, duplicate keys
/// refused (the default), no source snippets in messages.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
    }
}

/// One document of a multi-document file.
#[derive(Debug)]
pub struct Document {
    /// Position in the file, counted from 1 (empty documents count too).
    pub number: usize,
    /// The document as JSON-shaped data, or why it could not be read.
    pub value: Result<Value, String>,
}

/// Reads every document of `text`. Empty documents are left out (their
/// numbers are skipped, so later documents keep the number an editor shows).
/// A syntax error ends the file: the parser cannot tell where the next
/// document starts after one. A document that parses but cannot be JSON
/// (a non-string key, `.nan`) is an error of its own and the next one is read.
pub fn documents(text: &str) -> Vec<Document> {
    let mut out: Vec<Document> = Vec::new();
    let mut input = text.as_bytes();
    for item in serde_saphyr::read_with_options::<_, Spanned<Value>>(&mut input, options()) {
        let (line, value) = match item {
            Ok(doc) => (doc.defined.line(), Ok(doc.value)),
            Err(e) => (
                e.location().map_or(0, |at| at.line()),
                Err(format!("not valid YAML: {e}")),
            ),
        };
        // Documents come in order, each after the last; where the parser
        // gives no line (0), the next number is the best guess.
        let next = out.last().map_or(1, |d| d.number + 1);
        let number = if line > 0 {
            document_number(text, line).max(next)
        } else {
            next
        };
        out.push(Document { number, value });
    }
    out
}

/// One YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| e.to_string())
}

/// `value` as one YAML document: block collections, list items at their
/// key's indentation, a string with line breaks as a literal block (`|-`),
/// and every other string on one line, never folded, so a long CEL rule
/// reads and diffs as one line.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| e.to_string())
}

/// Which document (counted from 1) holds line `line` (1-based) of `text`:
/// every `---` line begins one, and so does the first content after the start
/// of the file or after a `...` end marker. Comments, blank lines and
/// directives (`%YAML`) before a document begin none.
fn document_number(text: &str, line: u64) -> usize {
    let mut number = 0usize;
    let mut open = false;
    for (row, l) in (1u64..).zip(text.lines()) {
        let start = is_marker(l, "---");
        if row > line || (row == line && !start) {
            break;
        }
        if start {
            number += 1;
            open = true;
        } else if is_marker(l, "...") {
            open = false;
        } else if !open && is_content(l) {
            number += 1;
            open = true;
        }
    }
    number.max(1)
}

/// `line` is the marker `m` (`---` or `...`) at column 0, alone or followed
/// by white space.
fn is_marker(line: &str, m: &str) -> bool {
    line.strip_prefix(m)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// `line` holds document content: not blank, not a comment, not a directive.
fn is_content(line: &str) -> bool {
    let t = line.trim();
    !(t.is_empty() || t.starts_with('#') || line.starts_with('%'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn numbers(text: &str) -> Vec<(usize, Result<Value, String>)> {
        documents(text)
            .into_iter()
            .map(|d| (d.number, d.value))
            .collect()
    }

    #[test]
    fn documents_are_numbered_as_an_editor_counts_them() {
        let got = numbers("a: 1\n---\nb: 2\n");
        assert_eq!(
            got,
            vec![(1, Ok(json!({"a": 1}))), (2, Ok(json!({"b": 2})))]
        );
        // A leading marker begins the first document, not a second one.
        let got = numbers("# policies\n---\na: 1\n---\nb: 2\n");
        assert_eq!(
            got,
            vec![(1, Ok(json!({"a": 1}))), (2, Ok(json!({"b": 2})))]
        );
        // Empty documents are left out but keep their place in the count.
        let got = numbers("a: 1\n---\n---\n# nothing\n---\nb: 2\n---\n");
        assert_eq!(
            got,
            vec![(1, Ok(json!({"a": 1}))), (4, Ok(json!({"b": 2})))]
        );
        // Content on the marker line, and an end marker before a new document.
        let got = numbers("--- {a: 1}\n...\nb: 2\n");
        assert_eq!(
            got,
            vec![(1, Ok(json!({"a": 1}))), (2, Ok(json!({"b": 2})))]
        );
        assert_eq!(
            numbers("%YAML 1.2\n---\na: 1\n"),
            vec![(1, Ok(json!({"a": 1})))]
        );
    }

    #[test]
    fn a_syntax_error_ends_the_file_and_names_its_document() {
        let got = numbers("a: 1\n---\nkind: [unclosed\n---\nb: 2\n");
        assert_eq!(got[0], (1, Ok(json!({"a": 1}))));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].0, 2);
        let message = got[1].1.as_ref().unwrap_err();
        assert!(message.starts_with("not valid YAML: "), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn the_core_schema_holds_and_keys_are_unique() {
        // Only true/false are booleans, as in YAML 1.2 and serde_yaml.
        let got = numbers("a: yes\nb: on\nc: true\nd: '1'\ne: 1.5\nf: ~\n");
        assert_eq!(
            got[0].1,
            Ok(json!({"a": "yes", "b": "on", "c": true, "d": "1", "e": 1.5, "f": null}))
        );
        let got = numbers("a: 1\na: 2\n");
        assert!(got[0].1.is_err(), "{got:?}");
    }

    #[test]
    fn hostile_documents_cost_a_bounded_error() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let got = numbers(&deep);
        assert!(got.iter().all(|d| d.1.is_err()), "deep nesting refused");
        // An alias bomb: each level doubles the last.
        let mut bomb = String::from("a0: &a0 [x, x]\n");
        for i in 1..40 {
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
        }
        let got = numbers(&bomb);
        assert!(got.iter().all(|d| d.1.is_err()), "alias expansion bounded");
    }

    #[test]
    fn typed_documents_and_output_round_trip() {
        let v: Value = from_str("a: [1, two]\n").unwrap();
        assert_eq!(v, json!({"a": [1, "two"]}));
        let text = to_string(&v).unwrap();
        assert_eq!(from_str::<Value>(&text).unwrap(), v);
        assert!(from_str::<Value>("a: [").is_err());
    }
}
