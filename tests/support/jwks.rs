//! Reading a JWK Set document. One file for every test that does: the
//! integration tests through `mod support` (and tests/common through
//! `#[path]`), the crate's unit tests through `crate::store::testing`.

use serde_json::Value;

/// The kids of a JWK Set document, in its order. Panics when `jwks` is not
/// a JWK Set or a key has no kid.
pub fn kids_of(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("a JWK Set has keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("a key has a kid").to_owned())
        .collect()
}
