//! The policy document parser: YAML text -> validated policies (strict
//! fields, the CRD's OpenAPI schema and CEL rules, `resolve`).
//! Oracle: every accepted policy resolves again to the same planner view,
//! and its timings keep the contract's order (publishAhead < rotationInterval).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = jwks_operator::standalone::policies::parse_policy_text(text, "fuzz.yaml".as_ref());
    for doc in &files.policies {
        let again = doc
            .policy
            .spec
            .resolve(doc.policy.rotation_request())
            .expect("an accepted policy resolves");
        assert_eq!(again, doc.resolved);
        assert!(doc.resolved.publish_ahead < doc.resolved.rotation_interval);
        assert!(doc.resolved.max_keys >= 2);
    }
    for bad in &files.bad {
        assert!(!bad.message.is_empty());
    }
});
