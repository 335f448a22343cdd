//! The private JWK Set parser (`jwks.json` of a Secret or state directory,
//! an adopted node-jose `keys.json`). Oracle: whatever parses re-encodes to a
//! set that parses to the same kids, and its public half never carries a
//! private member.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(keys) = jwks_operator::keys::parse_private_jwks(data) else {
        return;
    };
    let again = jwks_operator::keys::private_jwks_json(keys.iter());
    let reparsed = jwks_operator::keys::parse_private_jwks(again.expose())
        .expect("a set this parser accepted re-encodes to a set it accepts");
    assert_eq!(
        keys.iter().map(|k| k.kid()).collect::<Vec<_>>(),
        reparsed.iter().map(|k| k.kid()).collect::<Vec<_>>()
    );
    let public = jwks_operator::keys::public_jwks_json(keys.iter().map(|k| k.verifying_key()));
    let doc: serde_json::Value = serde_json::from_slice(&public).unwrap();
    for k in doc["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(k.get(private).is_none(), "public set carries {private}");
        }
    }
});
