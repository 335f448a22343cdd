//! The Go/Kubernetes duration parser (`90s`, `1h30m`, `1.5h`) behind every
//! duration field and flag. Oracle: what parses prints in a form that parses
//! back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = text.parse::<jwks_operator::api::Duration>() else {
        return;
    };
    let printed = d.to_string();
    let back: jwks_operator::api::Duration = printed
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(
        back.is_negative(),
        d.is_negative(),
        "{text:?} -> {printed:?}"
    );
    assert_eq!(
        std::time::Duration::from(back),
        std::time::Duration::from(d),
        "{text:?} -> {printed:?}"
    );
});
