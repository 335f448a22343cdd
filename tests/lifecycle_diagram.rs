//! The README's lifecycle picture is drawn from a real run, so it cannot
//! drift from what the code does: a standalone operator rotates a policy
//! twice (seconds instead of hours), every `lifecycle.json` it writes is
//! read, `scripts/lifecycle-diagram.py` draws the keys' records, and the
//! drawing must be the README's block. `JWKS_UPDATE_README=1` writes the
//! new drawing into README.md instead of failing (then review the diff).

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Operator, Workspace, manifest};
use serde_json::{Value, json};

const BEGIN: &str = "<!-- lifecycle diagram: drawn by scripts/lifecycle-diagram.py from a real run (tests/lifecycle_diagram.rs) -->\n```text\n";
const END: &str = "```\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_readmes_lifecycle_picture_is_drawn_from_a_real_run() {
    let settings = json!({
        "rotationInterval": "12s",
        "publishAhead": "4s",
        "maxTokenTTL": "4s",
        "clockSkew": "1s",
        // The harness runs standalone with --propagation-grace 1s.
        "propagationGrace": "1s",
    });
    let ws = Workspace::new();
    ws.write_policy(
        "demo.yaml",
        &manifest(
            "demo",
            "",
            &format!(
                "  algorithm: ES256\n  rotationInterval: {}\n  publishAhead: {}\n  maxTokenTTL: {}\n  clockSkew: {}\n",
                settings["rotationInterval"].as_str().unwrap(),
                settings["publishAhead"].as_str().unwrap(),
                settings["maxTokenTTL"].as_str().unwrap(),
                settings["clockSkew"].as_str().unwrap(),
            ),
        ),
    );
    let _op = Operator::start(&ws.policies(), &ws.state());
    let file = ws.policy_state("default/demo").join("lifecycle.json");

    // Every key record seen, by kid (the last values win); until the third
    // key signs, which is after the first one was pruned.
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let last = loop {
        let parsed = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(doc) = parsed {
            for key in doc["keys"].as_array().unwrap() {
                let kid = key["kid"].as_str().unwrap().to_owned();
                if !seen.contains_key(&kid) {
                    order.push(kid.clone());
                }
                seen.insert(kid, key.clone());
            }
            let third_signs = order.get(2).is_some_and(|k| seen[k]["state"] == "Active");
            if third_signs {
                break doc;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no third active key within 90s; seen: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The first key was really pruned: it is no longer in the stored set.
    let still = common::kids_of(&last);
    assert!(
        !still.contains(&order[0]),
        "the first key was not pruned: {last:#}"
    );
    assert_eq!(seen[&order[0]]["state"], "Retired");
    assert_eq!(seen[&order[1]]["state"], "Retired");

    let input = json!({
        "settings": settings,
        "keys": order.iter().map(|k| seen[k].clone()).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg(repo().join("scripts/lifecycle-diagram.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 scripts/lifecycle-diagram.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lifecycle-diagram.py failed on {input:#}"
    );
    let drawn = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        drawn.lines().filter(|l| l.starts_with("key ")).count(),
        3,
        "three keys drawn:\n{drawn}"
    );

    let readme_path = repo().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README.md has the lifecycle diagram block")
        + BEGIN.len();
    let end = start + readme[start..].find(END).expect("the block ends");
    let shown = &readme[start..end];
    if shown != drawn && std::env::var_os("JWKS_UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..start], drawn, &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        eprintln!("README.md: lifecycle diagram updated");
        return;
    }
    assert_eq!(
        shown, drawn,
        "README.md's lifecycle diagram differs from this run's (JWKS_UPDATE_README=1 rewrites it); the run's records: {input:#}"
    );
}
