//! The docs say what the code does. Each list below is taken from the code
//! (the `reasons` module, the binary's `--help`, a real `/metrics` scrape,
//! the policy duration parser) and held against the README and docs/*.md:
//!
//! - every Degraded reason and error kind the code can produce is in its
//!   table, and every table lists only what the code can produce; no reason
//!   or kind is written as a literal outside `src/reasons.rs`;
//! - every flag table lists exactly the flags of its subcommand's `--help`,
//!   with the environment variable it reads (or none); every other `--flag`
//!   the docs name belongs to one of our subcommands or to a named tool;
//! - every metric the docs name appears in a scrape, and every metric in a
//!   scrape is in the metrics tables;
//! - every duration in a docs example parses.
//!
//! A new reason, flag or metric therefore fails here until its row is added.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Operator, Workspace, http, manifest};
use jwks_operator::reasons;
use support::markdown::section;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// README.md and every docs/*.md, as (path, text).
fn docs() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_owned(), read("README.md"))];
    let mut names: Vec<_> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for n in names {
        let rel = format!("docs/{n}");
        out.push((rel.clone(), read(&rel)));
    }
    out
}

/// The cells of the first markdown table in `text`, header and separator
/// left out. `\|` inside a cell is not a separator.
fn first_table(text: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let mut cells = vec![String::new()];
            let mut prev = ' ';
            for c in l.trim().trim_start_matches('|').chars() {
                if c == '|' && prev != '\\' {
                    cells.push(String::new());
                } else {
                    cells.last_mut().unwrap().push(c);
                }
                prev = c;
            }
            cells.pop();
            cells.into_iter().map(|c| c.trim().to_owned()).collect()
        })
        .collect();
    assert!(rows.len() > 2, "no table in:\n{text}");
    rows.into_iter().skip(2).collect()
}

/// The texts between backticks.
fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn is_camel(s: &str) -> bool {
    s.len() > 1
        && s.chars().next().unwrap().is_ascii_uppercase()
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().any(|c| c.is_ascii_lowercase())
}

fn is_snake(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().unwrap().is_ascii_lowercase()
        && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

/// `documented` against `produced`: what each lacks, or `Ok`.
fn compare(what: &str, documented: &BTreeSet<String>, produced: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for missing in produced.difference(documented) {
        problems.push(format!(
            "{what}: {missing} is produced by the code but not documented"
        ));
    }
    for extra in documented.difference(produced) {
        problems.push(format!(
            "{what}: {extra} is documented but the code never produces it"
        ));
    }
    problems
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The CamelCase reasons in the first column of the table under `heading`.
fn reasons_table(file: &str, heading: &str) -> BTreeSet<String> {
    first_table(section(&read(file), file, heading))
        .iter()
        .flat_map(|row| code_spans(&row[0]))
        .filter(|s| is_camel(s))
        .collect()
}

// === Reasons and error kinds ===

#[test]
fn every_degraded_reason_the_code_produces_is_in_its_table_and_no_other() {
    let mut problems = compare(
        "docs/kubernetes.md reasons table",
        &reasons_table("docs/kubernetes.md", "### Problems and their reasons"),
        &set(reasons::KUBERNETES),
    );
    problems.extend(compare(
        "README.md standalone reasons table",
        &reasons_table("README.md", "### Problems and their reasons"),
        &set(reasons::STANDALONE),
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_error_kind_the_code_produces_is_in_its_table_and_no_other() {
    let file = "docs/kubernetes.md";
    let documented: BTreeSet<String> = first_table(section(&read(file), file, "### Error kinds"))
        .iter()
        .flat_map(|row| code_spans(&row[0]))
        .filter(|s| is_snake(s))
        .collect();
    let mut problems = compare(
        "docs/kubernetes.md error kinds",
        &documented,
        &set(reasons::ERROR_KINDS),
    );
    // The runbooks name kinds too: each must exist.
    let ops = read("docs/operations.md");
    for heading in ["### JwksReconcileErrors", "### JwksKeyGenerationFailing"] {
        for span in code_spans(section(&ops, "docs/operations.md", heading)) {
            if is_snake(&span) && span != "kind" && !reasons::ERROR_KINDS.contains(&span.as_str()) {
                problems.push(format!(
                    "docs/operations.md {heading}: `{span}` is not an error kind the code produces"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A reason or kind written as a literal somewhere else would be one the
/// lists above do not know.
#[test]
fn no_reason_or_error_kind_is_written_outside_the_reasons_module() {
    let mut problems = Vec::new();
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            if !name.ends_with(".rs")
                || name == "reasons.rs"
                || name.ends_with("tests.rs")
                || name == "testing.rs"
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests at the end of a file may use literals.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            problems.extend(literal_reasons(&path, code));
        }
    }
    assert!(
        problems.is_empty(),
        "use (or add) a constant in src/reasons.rs, its list, and its docs row:\n{}",
        problems.join("\n")
    );
}

/// `Problem::new("…"`, `reason: "…"`, `kind: "…"` and the `=> "…"` arms of a
/// `fn kind`/`fn reason` in `code`.
fn literal_reasons(path: &Path, code: &str) -> Vec<String> {
    let squeezed: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for needle in ["Problem::new(\"", "reason: \"", "kind: \""] {
        for (at, _) in squeezed.match_indices(needle) {
            let literal: String = squeezed[at + needle.len()..]
                .chars()
                .take_while(|&c| c != '"')
                .collect();
            found.push(literal);
        }
    }
    for head in [
        "fn kind(&self) -> &'static str {",
        "fn reason(&self) -> &'static str {",
    ] {
        for (at, _) in squeezed.match_indices(head) {
            let body = &squeezed[at..];
            let body = &body[..body.find(" fn ").unwrap_or(body.len())];
            for (arm, _) in body.match_indices("=> \"") {
                found.push(body[arm + 4..].chars().take_while(|&c| c != '"').collect());
            }
        }
    }
    // Only what looks like a reason (CamelCase) or a kind (snake_case):
    // `reason: "not a JSON object"` elsewhere is a message.
    found
        .into_iter()
        .filter(|l| is_camel(l) || (is_snake(l) && l.contains('_')))
        .map(|l| {
            format!(
                "{}: literal {l:?}",
                path.strip_prefix(repo()).unwrap().display()
            )
        })
        .collect()
}

// === Flags ===

/// `--flag` → the environment variable it reads, from `jwks-operator <sub> --help`.
fn help_flags(sub: &str) -> BTreeMap<String, Option<String>> {
    let out = Command::new(BIN)
        .args([sub, "--help"])
        .env_clear()
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{sub} --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('-') && line.len() - t.len() <= 6 {
            let long = t
                .split([',', ' ', '='])
                .find(|w| w.starts_with("--"))
                .map(|w| w.to_owned());
            current = long.clone();
            if let Some(f) = long {
                flags.insert(f, None);
            }
        }
        if let (Some(f), Some(at)) = (&current, line.find("[env: ")) {
            let env: String = line[at + 6..]
                .chars()
                .take_while(|&c| c != '=' && c != ']')
                .collect();
            flags.insert(f.clone(), Some(env));
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

fn long_flags(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let s = i + at;
        let before = if s == 0 { b' ' } else { b[s - 1] };
        let name: String = text[s + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if !before.is_ascii_alphanumeric()
            && before != b'-'
            && name.len() > 1
            && name.chars().next().unwrap().is_ascii_lowercase()
        {
            out.push(format!("--{}", name.trim_end_matches('-')));
        }
        i = s + 2 + name.len();
    }
    out
}

/// The flag table under `heading`: `--flag` → the environment variable the
/// row names in its first cell (an upper-case code span), if any.
fn flags_table(file: &str, heading: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for row in first_table(section(&read(file), file, heading)) {
        let spans = code_spans(&row[0]);
        let env = spans
            .iter()
            .find(|s| s.len() > 2 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .cloned();
        for f in spans.iter().flat_map(|s| long_flags(s)) {
            out.insert(f, env.clone());
        }
    }
    out
}

#[test]
fn every_flag_table_lists_exactly_its_subcommands_flags_and_their_env_vars() {
    let tables = [
        ("README.md", "### Flags", "standalone"),
        ("README.md", "### `verify` flags", "verify"),
        ("docs/kubernetes.md", "## `jwks-operator run`", "run"),
        ("docs/service-account-signing.md", "## Flags", "signer"),
    ];
    let mut problems = Vec::new();
    for (file, heading, sub) in tables {
        let documented = flags_table(file, heading);
        let help = help_flags(sub);
        for (flag, env) in &help {
            match documented.get(flag) {
                None => problems.push(format!("{file} {heading}: {flag} of `{sub} --help` is missing")),
                Some(d) if d != env => problems.push(format!(
                    "{file} {heading}: {flag} reads env {env:?} (`{sub} --help`), the table says {d:?}"
                )),
                Some(_) => {}
            }
        }
        for flag in documented.keys() {
            if !help.contains_key(flag) {
                problems.push(format!("{file} {heading}: {flag} is not a flag of `{sub}`"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Flags of other programs the docs show, by program.
const OTHER_TOOLS_FLAGS: &[(&str, &[&str])] = &[
    (
        "cargo",
        &[
            "--release",
            "--test",
            "--lib",
            "--locked",
            "--bench",
            "--check",
            "--all-targets",
            "--offline",
        ],
    ),
    (
        "helm",
        &["--set", "--wait", "--take-ownership", "--reuse-values"],
    ),
    (
        "kubectl",
        &[
            "--raw",
            "--overwrite",
            "--cascade",
            "--token",
            "--type",
            "--from-file",
        ],
    ),
    (
        "kube-apiserver",
        &[
            "--service-account-signing-endpoint",
            "--service-account-signing-key-file",
            "--service-account-key-file",
            "--service-account-issuer",
            "--service-account-jwks-uri",
            "--service-account-max-token-expiration",
            "--service-account-extend-token-expiration",
            "--authentication-config",
        ],
    ),
    ("scripts/build-image.sh", &["--binary", "--ref"]),
    ("kind", &["--name"]),
    ("docker", &["--filter"]),
];

#[test]
fn every_flag_the_docs_name_is_a_flag_of_ours_or_of_a_named_tool() {
    let mut ours = BTreeSet::new();
    for sub in [
        "run",
        "standalone",
        "signer",
        "rotate",
        "status",
        "revoke",
        "verify",
        "crd",
    ] {
        ours.extend(help_flags(sub).into_keys());
    }
    ours.extend(["--help".to_owned(), "--version".to_owned()]);
    let theirs: BTreeSet<&str> = OTHER_TOOLS_FLAGS
        .iter()
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    let mut problems = Vec::new();
    for (file, text) in docs() {
        for flag in long_flags(&text) {
            if !ours.contains(&flag) && !theirs.contains(flag.as_str()) {
                problems.push(format!("{file}: {flag} is no flag of jwks-operator (nor of a tool in OTHER_TOOLS_FLAGS)"));
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// === Metrics ===

/// Metric names in an OpenMetrics scrape: every family (`# TYPE`), with the
/// sample suffix its type adds (`_total`, `_info`), and every sample name.
fn scraped_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            let (name, kind) = (w.next().unwrap(), w.next().unwrap_or(""));
            names.insert(name.to_owned());
            match kind {
                "counter" => names.insert(format!("{name}_total")),
                "info" => names.insert(format!("{name}_info")),
                _ => false,
            };
        } else if !line.starts_with('#') && !line.is_empty() {
            let name: String = line.chars().take_while(|&c| c != '{' && c != ' ').collect();
            names.insert(name);
        }
    }
    names
}

/// The families of a scrape, as the docs name them (counters with `_total`,
/// info with `_info`).
fn scraped_families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|rest| {
            let mut w = rest.split_whitespace();
            let (name, kind) = (w.next().unwrap(), w.next().unwrap_or(""));
            match kind {
                "counter" => format!("{name}_total"),
                "info" => format!("{name}_info"),
                _ => name.to_owned(),
            }
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `scrape` until its text contains every one of `wanted`.
fn scrape_until(what: &str, wanted: &[&str], mut scrape: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        if let Some(text) = scrape() {
            if wanted.iter().all(|w| text.contains(w)) {
                return text;
            }
            last = text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no scrape with all of {wanted:?} within 30s; the last:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics_of(addr: std::net::SocketAddr) -> Option<String> {
    let r = http(addr, "GET", "/metrics", &[], None);
    (r.status == 200).then(|| r.text())
}

/// A standalone operator in the states that make every family of series
/// appear: a retired key (`next_prune`), a pending one
/// (`pending_activation`), a revocation (`revoked_key_exposure`), a corrupt
/// state (`reconcile_errors`), a deleted one (`key_set_lost`), a refused
/// connection, served requests.
fn standalone_scrape() -> String {
    let ws = Workspace::new();
    let spec =
        |extra: &str| format!("  algorithm: ES256\n  tokenEndpoint: {{enabled: true}}\n{extra}");
    let write = |rotate: &str, revoked: &str| {
        let ann = |on: bool| if on { rotate.to_owned() } else { String::new() };
        ws.write_policy(
            "a.yaml",
            &manifest("retired", &ann(true), &spec("  publishAhead: 0s\n")),
        );
        ws.write_policy(
            "b.yaml",
            &manifest(
                "pending",
                &ann(true),
                &spec("  publishAhead: 1h\n  rotationInterval: 24h\n"),
            ),
        );
        ws.write_policy("c.yaml", &manifest("revoked", "", &spec(revoked)));
        ws.write_policy("d.yaml", &manifest("corrupt", "", &spec("")));
        ws.write_policy("e.yaml", &manifest("lost", "", &spec("")));
        // A copy in a directory (spec.publish), edited below: repaired.
        ws.write_policy(
            "f.yaml",
            &manifest(
                "published",
                "",
                &spec(&format!(
                    "  publish:\n  - url: file://{}\n",
                    ws.dir.path().join("copy").display()
                )),
            ),
        );
    };
    write("", "");
    let corrupt = ws.policy_state("default/corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("lifecycle.json"), "not JSON").unwrap();
    let op = Operator::start_with(
        &ws.policies(),
        &ws.state(),
        &[
            "--http-max-connections",
            "2",
            "--publish-verify-interval",
            "1s",
        ],
    );
    std::fs::write(ws.dir.path().join("copy/jwks.json"), "{}").unwrap();
    let kid =
        std::fs::read_to_string(ws.policy_state("default/revoked").join("active.kid")).unwrap();
    write(
        "jwks.dev/rotate-requested-at: \"now\"",
        &format!("  revokedKeyIDs: [{}]\n", kid.trim()),
    );
    op.reload();
    // A key set deleted under the running process is written back.
    std::fs::remove_dir_all(ws.policy_state("default/lost")).unwrap();
    scrape_until(
        "standalone",
        &[
            "jwks_operator_key_set_lost_total{",
            "jwks_operator_next_prune_timestamp_seconds{",
            "jwks_operator_pending_activation_timestamp_seconds{",
            "jwks_operator_revoked_key_exposure_timestamp_seconds{",
            "jwks_operator_reconcile_errors_total{",
            "jwks_operator_http_requests_total{",
            "jwks_operator_publication_repairs_total{",
            "jwks_operator_publication_confirmed_timestamp_seconds{",
            "jwks_operator_publication_results_total{",
        ],
        || metrics_of(op.jwks),
    );
    // One connection more than --http-max-connections 2 allows, on the
    // token listener (the scrapes use the JWKS listener): answered 503.
    let held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(op.token).unwrap())
        .collect();
    scrape_until("a refused connection", &["503"], || {
        use std::io::Read as _;
        let mut third = std::net::TcpStream::connect(op.token).ok()?;
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        let _ = third.read_to_string(&mut answer);
        Some(answer)
    });
    drop(held);
    scrape_until(
        "standalone, after a refused connection",
        &["jwks_operator_http_connections_refused_total{"],
        || metrics_of(op.jwks),
    )
}

/// A standalone operator serving TLS whose files were replaced by a bad
/// pair: `tls_reloads_total{result="failure"}` (the files are looked at
/// every 10 s).
fn tls_scrape() -> String {
    let ws = Workspace::new();
    ws.write_policy("p.yaml", &manifest("tls", "", "  algorithm: ES256\n"));
    let (ca, cert, key) = common::tls_pair();
    let cert_file = ws.dir.path().join("tls.crt");
    let key_file = ws.dir.path().join("tls.key");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let op = Operator::start_with(
        &ws.policies(),
        &ws.state(),
        &[
            "--tls-cert-file",
            cert_file.to_str().unwrap(),
            "--tls-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    std::fs::write(&cert_file, "not a certificate").unwrap();
    scrape_until("TLS", &["jwks_operator_tls_reloads_total{"], || {
        let r = common::https(op.jwks, &ca, "GET", "/metrics", &[], None);
        (r.status == 200).then(|| r.text())
    })
}

/// A signer that answered one FetchKeys.
fn signer_scrape() -> String {
    let ws = Workspace::new();
    ws.write_policy(
        "sa.yaml",
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {name: sa, namespace: kube-system}\nspec: {algorithm: ES256, maxTokenTTL: 1h}\n",
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let socket = ws.dir.path().join("s.sock");
    let mut child = Command::new(BIN)
        .arg("signer")
        .arg("--policies")
        .arg(ws.policies())
        .args(["--policy", "kube-system/sa", "--state-dir"])
        .arg(ws.state())
        .arg("--socket")
        .arg(&socket)
        .args(["--metrics-addr", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the signer");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.block_on(support::signer::fetch_kids(&socket)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the signer never answered FetchKeys");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = scrape_until("signer", &["jwks_operator_signer_requests_total{"], || {
        std::net::TcpStream::connect(addr).ok()?;
        metrics_of(addr)
    });
    let _ = child.kill();
    let _ = child.wait();
    text
}

/// `/metrics` of a standalone operator (plain and TLS) and of a signer, in
/// the states that make every family appear.
fn scrapes() -> (String, String) {
    let tls = std::thread::spawn(tls_scrape);
    let signer = std::thread::spawn(signer_scrape);
    let standalone = standalone_scrape() + &tls.join().expect("TLS scrape");
    (standalone, signer.join().expect("signer scrape"))
}

#[test]
fn every_metric_the_docs_name_is_scraped_and_every_scraped_metric_is_documented() {
    let (standalone, signer) = scrapes();
    let prefix = "jwks_operator_";
    let mut problems = Vec::new();

    // The metrics table lists exactly the families of a scrape.
    let file = "docs/kubernetes.md";
    let table: BTreeSet<String> = first_table(section(&read(file), file, "## Metrics"))
        .iter()
        .flat_map(|row| code_spans(&row[0]))
        .map(|m| format!("{prefix}{m}"))
        .collect();
    // Families only `run` exports (its Secret watch); not in these scrapes.
    let mut families = scraped_families(&standalone);
    families.extend(RUN_ONLY_METRICS.iter().map(|m| (*m).to_owned()));
    problems.extend(compare(
        "docs/kubernetes.md metrics table",
        &table,
        &families,
    ));

    // The signer's own families are named in its doc.
    let sa = read("docs/service-account-signing.md");
    for family in scraped_families(&signer).difference(&scraped_families(&standalone)) {
        if !sa.contains(family.as_str()) {
            problems.push(format!(
                "docs/service-account-signing.md: {family} (a signer metric) is not named"
            ));
        }
    }

    // Every full metric name in the docs exists.
    let mut known = scraped_names(&standalone);
    known.extend(RUN_ONLY_METRICS.iter().map(|m| (*m).to_owned()));
    known.extend(scraped_names(&signer));
    for (file, text) in docs() {
        for (at, _) in text.match_indices(prefix) {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.ends_with('_') && !known.contains(&name) {
                problems.push(format!("{file}: {name} is in no scrape"));
            }
        }
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{}\n\nstandalone scrape:\n{standalone}\nsigner scrape:\n{signer}",
        problems.join("\n")
    );
}

/// Metric families only `jwks-operator run` exports (its Secret watch), so
/// absent from the standalone and signer scrapes above. Not yet checked
/// against a scrape of `run` on the test control plane.
const RUN_ONLY_METRICS: &[&str] = &["jwks_operator_key_set_stale"];

// === Durations ===

/// The spec fields that hold a duration.
const DURATION_FIELDS: &[&str] = &[
    "rotationInterval",
    "publishAhead",
    "maxTokenTTL",
    "clockSkew",
    "verifierRefreshInterval",
];

#[test]
fn every_duration_in_a_docs_example_parses() {
    let mut texts = docs();
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let rel = path.strip_prefix(repo()).unwrap().display().to_string();
            texts.push((rel.clone(), read(&rel)));
        }
    }
    let mut checked = 0;
    let mut problems = Vec::new();
    for (file, text) in &texts {
        for field in DURATION_FIELDS {
            let needle = format!("{field}: ");
            for (at, _) in text.match_indices(&needle) {
                let value: String = text[at + needle.len()..]
                    .trim_start_matches(['"', '\''])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                    .collect();
                // Prose ("maxTokenTTL: kube-apiserver ...") is not an example.
                if !value.starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                checked += 1;
                if let Err(e) = value.parse::<jwks_operator::api::Duration>() {
                    problems.push(format!("{file}: {field}: {value} does not parse: {e}"));
                }
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} durations found: is the scan broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
