//! The token verifier. The first byte picks the mode:
//! - even: the rest is a compact JWS as received from a client;
//! - odd: the rest is a claims payload, signed with the fixture EdDSA key,
//!   so the fuzzer reaches the claim checks behind the signature.
//!
//! Oracle: an accepted token has a numeric `exp` later than now - leeway,
//! and no `nbf`/`iat` later than now + leeway.
#![no_main]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwks_operator::keys::token::Expectations;
use jwks_operator_fuzz::{fixture_key, fixture_verifier, now};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let key = fixture_key("EdDSA");
        let mut t = key.jws_header().to_owned();
        t.push('.');
        URL_SAFE_NO_PAD.encode_string(rest, &mut t);
        let sig = key.sign(t.as_bytes()).expect("EdDSA signs");
        t.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut t);
        t
    };
    let leeway = Duration::from_secs(u64::from(mode / 2) * 7);
    let expect = Expectations {
        leeway,
        ..Expectations::default()
    };
    let Ok(ok) = fixture_verifier().verify(&token, &expect, now()) else {
        return;
    };
    let now = now().as_second() as f64;
    let leeway = leeway.as_secs() as f64;
    let exp = ok.claims["exp"].as_f64().expect("exp is a number");
    assert!(
        exp.is_finite() && exp.floor() + leeway > now,
        "accepted exp {exp}"
    );
    assert!(exp < 9.2e18, "accepted an exp beyond i64: {exp}");
    for name in ["nbf", "iat"] {
        if let Some(t) = ok.claims.get(name) {
            let t = t.as_f64().expect("a number");
            assert!(t.floor() <= now + leeway, "accepted {name} {t}");
        }
    }
});
