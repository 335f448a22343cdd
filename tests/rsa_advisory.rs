//! RUSTSEC-2023-0071 (the Marvin timing attack on the `rsa` crate) does not
//! apply here because nothing signs or decrypts with the `rsa` crate: every
//! RS*/PS* signature is made by aws-lc-rs, and `rsa` only generates keys and
//! checks JWK members (docs/key-material.md, deny.toml). This test keeps it so:
//! it fails when any source file of the crate (src/, including the signer and
//! every adapter) names one of the `rsa` crate's private-key operations. The
//! clippy gate (clippy.toml `disallowed-methods`/`disallowed-types`) catches
//! the same by path; this catches it in `cargo test` as well, also through
//! glob imports and trait methods clippy cannot see by name.

use std::path::{Path, PathBuf};

/// The `rsa` crate's names for private-key operations: PKCS#1 v1.5 and PSS
/// signing keys, the signature schemes handed to `PrivateKey::sign`, OAEP and
/// PKCS#1 v1.5 decryption, the raw `hazmat` primitives, and the signer traits
/// the crate re-exports.
const FORBIDDEN: &[&str] = &[
    "pkcs1v15::SigningKey",
    "pss::SigningKey",
    "pss::BlindedSigningKey",
    "BlindedSigningKey",
    "Pkcs1v15Sign",
    "Pkcs1v15Encrypt",
    "DecryptingKey",
    "oaep::",
    "rsa::pss",
    "rsa::pkcs1v15",
    "rsa::hazmat",
    "rsa_decrypt",
    "rsa::signature",
    ".sign_with_rng(",
    ".decrypt(",
    ".decrypt_blinded(",
    "RandomizedSigner",
];

/// Every line of `text` that names a forbidden operation, as `line: text`.
fn offending_lines(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| FORBIDDEN.iter().any(|f| line.contains(f)))
        .map(|(i, line)| format!("{}: {}", i + 1, line.trim()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_signs_or_decrypts_through_the_rsa_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 40, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in offending_lines(&text) {
            found.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "the rsa crate must not sign or decrypt (RUSTSEC-2023-0071; sign with aws-lc-rs):\n{}",
        found.join("\n")
    );
}

/// The scan itself: each way of reaching a private-key operation is caught,
/// and the uses the crate makes today (generation, components, PKCS#8
/// encoding for aws-lc-rs) are not.
#[test]
fn the_scan_catches_signing_and_decryption_and_passes_generation() {
    for bad in [
        "let key = rsa::pkcs1v15::SigningKey::<Sha256>::new(k);",
        "use rsa::pss::BlindedSigningKey;",
        "use rsa::{pkcs1v15::SigningKey, PrivateKey};",
        "let sig = key.sign_with_rng(&mut rng, Pkcs1v15Sign::new::<Sha256>(), &h)?;",
        "let pt = key.decrypt(Oaep::new::<Sha256>(), &ct)?;",
        "let m = rsa::hazmat::rsa_decrypt_and_check(&key, Some(&mut rng), &c)?;",
        "use rsa::signature::RandomizedSigner as _;",
    ] {
        assert_eq!(offending_lines(bad).len(), 1, "not caught: {bad}");
    }
    for fine in [
        "let key = rsa::PrivateKey::new(rng, bits)",
        "let key = rsa::PrivateKey::from_components(n, e, d, vec![p, q])",
        "use rsa::pkcs8::EncodePrivateKey as _;",
        "let pair = RsaKeyPair::from_pkcs8(pkcs8.expose())",
        "pair.sign(encoding, &rng, msg, &mut sig)",
    ] {
        assert!(offending_lines(fine).is_empty(), "wrongly caught: {fine}");
    }
}
