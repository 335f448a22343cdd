//! The state decoders: the five files of a stored key set (the Secret
//! layout, `lifecycle.json` included) -> a key set, strictly.
//!
//! Input: up to five sections separated by NUL bytes, for `jwks.json`,
//! `jwks.public.json`, `active.kid`, `active.pem`, `lifecycle.json` in that
//! order; an empty section is an absent file.
//! Oracle: a decoded set re-encodes, and that encoding decodes to the same set.
#![no_main]

use jwks_operator::store::layout::{self, DATA_KEYS, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sections: Vec<&[u8]> = data.splitn(DATA_KEYS.len(), |b| *b == 0).collect();
    sections.resize(DATA_KEYS.len(), b"");
    let get = |key: &str| {
        let i = DATA_KEYS.iter().position(|k| *k == key)?;
        Some(sections[i]).filter(|s| !s.is_empty())
    };
    let Ok(Decoded::Keys { set, generation }) = layout::decode(get) else {
        return;
    };
    let encoded = layout::encode(&set, generation).expect("a decoded set encodes");
    let entries = encoded.entries();
    let again = layout::decode(|key| entries.iter().find(|(k, _)| *k == key).map(|(_, b)| *b))
        .expect("an encoded set decodes");
    match again {
        Decoded::Keys {
            set: set2,
            generation: g2,
        } => {
            assert_eq!(g2, generation);
            assert_eq!(set2, set);
        }
        _ => panic!("an encoded set decodes as a key set"),
    }
});
