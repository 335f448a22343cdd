//! A policy's state directory as the tests look at it. One file for the
//! integration tests (`tests/common`) and the file store's unit tests
//! (`src/store/files_tests.rs` includes it by path).

use std::collections::BTreeMap;
use std::path::Path;

/// What a policy's state directory holds: the Secret layout's data keys.
pub const STATE_FILES: [&str; 5] = [
    "active.kid",
    "active.pem",
    "jwks.json",
    "jwks.public.json",
    "lifecycle.json",
];

/// File name → bytes of everything in `dir`.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    files(dir).into_keys().collect()
}
