//! Writes the seed corpus of every fuzz target, from the repository's
//! fixtures, into `<out>/<target>/`: `seeds <repo root> <out>`.
//! `scripts/fuzz.sh` runs it before fuzzing; the seeds are not committed
//! because they are derived from files that are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwks_operator::keys::lifecycle::KeySet;
use jwks_operator::store::layout::{self, DATA_KEYS};
use jwks_operator_fuzz::{FIXTURE_JWKS, POLICY_YAML, fixture_key, fixture_keys, now};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(root), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: seeds <repo root> <corpus dir>");
        std::process::exit(2);
    };
    let root = PathBuf::from(root);
    let out = PathBuf::from(out);
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };

    // JWK Sets: the fixtures, private and public, whole and one key each.
    let node_jose = read("tests/fixtures/node-jose/keys.json");
    write("jwks_private", "all-algorithms", FIXTURE_JWKS);
    write("jwks_private", "node-jose", &node_jose);
    let public =
        jwks_operator::keys::public_jwks_json(fixture_keys().iter().map(|k| k.verifying_key()));
    write("jwks_public", "all-algorithms", &public);
    write("jwks_public", "node-jose-private", &node_jose);
    for (i, k) in fixture_keys().iter().enumerate() {
        let one = jwks_operator::keys::private_jwks_json(std::iter::once(&**k));
        write("jwks_private", &format!("key-{i}"), one.expose());
        let one = jwks_operator::keys::public_jwks_json(std::iter::once(k.verifying_key()));
        write("jwks_public", &format!("key-{i}"), &one);
    }

    // Tokens: node-jose's, raw (mode 0); claims payloads to sign (mode 1).
    let tokens: serde_json::Value =
        serde_json::from_slice(&read("tests/fixtures/node-jose/tokens.json")).unwrap();
    for (i, t) in tokens.as_array().unwrap().iter().enumerate() {
        let mut seed = vec![0u8];
        seed.extend_from_slice(t["token"].as_str().unwrap().as_bytes());
        write("token_verify", &format!("node-jose-{i}"), &seed);
    }
    let n = now().as_second();
    let payloads = [
        format!(r#"{{"sub":"a","iat":{n},"nbf":{n},"exp":{}}}"#, n + 600),
        format!(
            r#"{{"iss":"x","aud":["orders"],"iat":{n}.5,"exp":{}.25}}"#,
            n + 1
        ),
        format!(r#"{{"exp":{}}}"#, n - 5),
        r#"{"exp":1e300}"#.to_string(),
        r#"{"exp":18446744073709551615}"#.to_string(),
    ];
    for (i, p) in payloads.iter().enumerate() {
        let mut seed = vec![1u8];
        seed.extend_from_slice(p.as_bytes());
        write("token_verify", &format!("claims-{i}"), &seed);
    }

    // Policy documents: the examples, the HTTP target's policy.
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            write("policy_yaml", &name, &std::fs::read(&p).unwrap());
        }
    }
    write("policy_yaml", "fuzz-policy.yaml", POLICY_YAML.as_bytes());

    // Durations, as users write them.
    for (i, d) in [
        "90s",
        "15m",
        "24h",
        "1h30m",
        "1.5h",
        "-1m",
        "0",
        "300ms",
        "2h45m30.5s",
        "1us",
        "100ns",
    ]
    .iter()
    .enumerate()
    {
        write("duration", &format!("d{i}"), d.as_bytes());
    }

    // Stored key sets: adopted fixture keys, encoded as the five files.
    let policy =
        jwks_operator::standalone::policies::parse_policy_text(POLICY_YAML, Path::new("p.yaml"))
            .policies
            .remove(0)
            .resolved;
    for (i, keys) in [
        vec![fixture_key("EdDSA").clone()],
        vec![
            fixture_key("ES256").clone(),
            fixture_key("EdDSA").clone(),
            fixture_key("ES384").clone(),
        ],
        fixture_keys().to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        let set: KeySet<Arc<_>> = KeySet::adopt(keys, now(), &policy);
        let encoded = layout::encode(&set, 3).unwrap();
        let entries = encoded.entries();
        let mut seed = Vec::new();
        for (j, key) in DATA_KEYS.iter().enumerate() {
            if j > 0 {
                seed.push(0);
            }
            seed.extend_from_slice(entries.iter().find(|(k, _)| k == key).unwrap().1);
        }
        write("state_decode", &format!("set-{i}"), &seed);
    }
    let mut adoptable = node_jose.clone();
    adoptable.extend_from_slice(b"\0\0\0\0");
    write("state_decode", "adoptable", &adoptable);

    // HTTP requests, in the target's text form.
    let token = tokens[0]["token"].as_str().unwrap();
    let requests = [
        "J GET /fuzz/api/.well-known/jwks.json\n\n".to_string(),
        "J GET /fuzz/api/.well-known/jwks.json\nif-none-match: \"x\", W/\"y\"\n\n".to_string(),
        "J GET /fuzz/api/.well-known/openid-configuration\n\n".to_string(),
        "J GET /.well-known/jwks.json\n\n".to_string(),
        "J GET /policies\n\n".to_string(),
        "J GET /readyz\n\n".to_string(),
        "J GET /metrics\n\n".to_string(),
        "T POST /fuzz/api/token\ncontent-type: application/json\n\n{\"sub\":\"a\",\"ttl\":\"5m\",\"aud\":[\"orders\"],\"claims\":{\"x\":1}}".to_string(),
        "T POST /fuzz/api/token\ncontent-type: application/json\n\n{\"ttl\":60}".to_string(),
        format!("T POST /fuzz/api/verify\ncontent-type: application/json\n\n{{\"token\":\"{token}\"}}"),
        format!(
            "T POST /fuzz/api/verify\ncontent-type: application/json\n\n{{\"token\":\"{}.{}.\"}}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"exp":1}"#)
        ),
    ];
    for (i, r) in requests.iter().enumerate() {
        write("http_routes", &format!("r{i}"), r.as_bytes());
    }
}
