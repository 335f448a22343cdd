//! The public JWK Set parsers: the strict one (`jwks.public.json`) and the
//! lenient one `jwks-operator verify` uses on third-party sets.
//! Oracle: a strictly parsed set re-encodes to a set that parses to the
//! same kids; the lenient reader never accepts fewer keys than the strict.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let strict = jwks_operator::keys::parse_public_jwks(data);
    let lenient = jwks_operator::verify::usable_keys(data);
    if let Ok(keys) = strict {
        let again = jwks_operator::keys::public_jwks_json(keys.iter());
        let reparsed = jwks_operator::keys::parse_public_jwks(&again)
            .expect("a set this parser accepted re-encodes to a set it accepts");
        assert_eq!(
            keys.iter().map(|k| k.kid()).collect::<Vec<_>>(),
            reparsed.iter().map(|k| k.kid()).collect::<Vec<_>>()
        );
        if !keys.is_empty() {
            let (usable, _) = lenient.expect("the lenient reader takes a strict set");
            assert!(usable.len() >= keys.len());
        }
    }
});
