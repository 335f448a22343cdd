//! The container image: `scripts/build-image.sh` packs this test binary into
//! an OCI image tarball; the tarball is a valid OCI layout whose digests
//! match, its layer holds exactly the tested binary with no shell, and its
//! config agrees with the Dockerfile (user, entrypoint, command, ports).
//! The real node runs it as pods in tests/node_e2e.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

fn tar(args: &[&str], dir: &Path) {
    let out = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The image, built once from this test binary and unpacked.
struct Image {
    dir: PathBuf,
    config: Value,
    rootfs: PathBuf,
    index: Value,
}

fn build_and_unpack() -> Image {
    let dir = tempfile::tempdir().unwrap().keep();
    let tarball = dir.join("image.oci.tar");
    let out = Command::new("bash")
        .arg(root().join("scripts/build-image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_jwks-operator")])
        .arg("--out")
        .arg(&tarball)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        tarball.display().to_string(),
        "prints the tarball's path"
    );
    let oci = dir.join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    tar(&["-xf", tarball.to_str().unwrap()], &oci);

    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = oci.join("blobs/sha256").join(hex);
        assert_eq!(sha256_hex(&path), hex, "blob {hex} matches its name");
        path
    };
    assert_eq!(
        read_json(&oci.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read_json(&oci.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest_path = blob(entry["digest"].as_str().unwrap());
    assert_eq!(
        entry["size"].as_u64().unwrap(),
        std::fs::metadata(&manifest_path).unwrap().len()
    );
    let manifest = read_json(&manifest_path);
    assert_eq!(manifest["schemaVersion"], 2);
    let config_path = blob(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = read_json(&config_path);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(layers[0]["digest"].as_str().unwrap());
    assert_eq!(
        layers[0]["size"].as_u64().unwrap(),
        std::fs::metadata(&layer).unwrap().len()
    );
    // The config's diff_id is the digest of the uncompressed layer.
    let uncompressed = dir.join("layer.tar");
    let gunzip = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' > '{}'",
            layer.display(),
            uncompressed.display()
        ))
        .status()
        .unwrap();
    assert!(gunzip.success());
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&uncompressed))
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    tar(&["-xf", uncompressed.to_str().unwrap()], &rootfs);
    Image {
        dir,
        config,
        rootfs,
        index,
    }
}

/// One Dockerfile instruction of the final stage (the last `FROM`), as
/// written after the keyword.
fn dockerfile_final_stage(keyword: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let final_stage = text.rsplit("\nFROM ").next().unwrap();
    final_stage
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{keyword} ")))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn exec_form(value: &str) -> Vec<String> {
    serde_json::from_str(value)
        .unwrap_or_else(|e| panic!("`{value}` is not the JSON exec form: {e}"))
}

#[test]
fn the_built_image_is_the_tested_binary_and_agrees_with_the_dockerfile() {
    let image = build_and_unpack();
    let config = &image.config["config"];

    // The Dockerfile's final stage and the OCI config say the same.
    let user = dockerfile_final_stage("USER");
    assert_eq!(user.len(), 1, "one USER in the final stage");
    assert_eq!(config["User"], user[0].as_str());
    assert_eq!(config["User"], "65532:65532", "the chart's runAsUser");
    let entrypoint = dockerfile_final_stage("ENTRYPOINT");
    assert_eq!(
        serde_json::to_value(exec_form(&entrypoint[0])).unwrap(),
        config["Entrypoint"]
    );
    let cmd = dockerfile_final_stage("CMD");
    assert_eq!(
        serde_json::to_value(exec_form(&cmd[0])).unwrap(),
        config["Cmd"]
    );
    let exposed: BTreeSet<String> = dockerfile_final_stage("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|p| {
            if p.contains('/') {
                p
            } else {
                format!("{p}/tcp")
            }
        })
        .collect();
    let ports: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .cloned()
        .collect();
    assert_eq!(ports, exposed);
    // ... and the chart's container ports are among them.
    let deployment =
        std::fs::read_to_string(root().join("charts/jwks-operator/templates/deployment.yaml"))
            .unwrap();
    for port in deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("containerPort: "))
    {
        assert!(ports.contains(&format!("{port}/tcp")), "chart port {port}");
    }
    assert_eq!(image.config["os"], "linux");
    assert_eq!(image.config["architecture"], "amd64");

    // The entrypoint is this test binary (without its debug sections, as
    // the script documents), executable.
    let entry = config["Entrypoint"][0].as_str().unwrap();
    let packed = image.rootfs.join(entry.trim_start_matches('/'));
    let expected = image.dir.join("expected");
    let status = Command::new("objcopy")
        .args(["--strip-debug", env!("CARGO_BIN_EXE_jwks-operator")])
        .arg(&expected)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        std::fs::read(&packed).unwrap() == std::fs::read(&expected).unwrap(),
        "the layer holds the binary the tests run"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_ne!(
        std::fs::metadata(&packed).unwrap().permissions().mode() & 0o111,
        0
    );

    // No shell or other executables besides the binary and, for a dynamic
    // binary, its loader and libraries.
    let out = Command::new("find")
        .arg(&image.rootfs)
        .args(["-type", "f", "-perm", "/111"])
        .output()
        .unwrap();
    for file in String::from_utf8_lossy(&out.stdout).lines() {
        let rel = file.strip_prefix(image.rootfs.to_str().unwrap()).unwrap();
        assert!(
            rel == entry || rel.contains(".so"),
            "unexpected executable {rel} in the image"
        );
    }
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"] {
        assert!(!image.rootfs.join(shell).exists(), "{shell} in the image");
    }
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "user 65532 has a name");

    // containerd names the image after the chart's default.
    let chart = std::fs::read_to_string(root().join("charts/jwks-operator/Chart.yaml")).unwrap();
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion: "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(
        image.index["manifests"][0]["annotations"]["io.containerd.image.name"],
        format!("ghcr.io/jwks-operator/jwks-operator:{app_version}").as_str()
    );
    std::fs::remove_dir_all(&image.dir).unwrap();
}

#[test]
fn the_image_build_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let build = |name: &str| {
        let out = dir.path().join(name);
        let status = Command::new("bash")
            .arg(root().join("scripts/build-image.sh"))
            // Any executable shows it; a small one keeps it quick.
            .args(["--binary", "/bin/true"])
            .arg("--out")
            .arg(&out)
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        sha256_hex(&out)
    };
    assert_eq!(build("a.tar"), build("b.tar"));
}

/// `name`'s version as `Cargo.lock` pins it (the one entry of that name).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut versions = lock
        .split("[[package]]")
        .filter(|p| p.contains(&format!("\nname = \"{name}\"\n")))
        .filter_map(|p| {
            p.lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .map(|v| v.trim_end_matches('"').to_owned())
        });
    let version = versions
        .next()
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
    assert!(
        versions.next().is_none(),
        "{name} is locked at more than one version"
    );
    version
}

/// What scanners read (SECURITY.md): the CycloneDX SBOM that
/// `scripts/build-image.sh` writes beside the tarball, and the dependency list
/// `cargo auditable` embeds in the binary, both name the crates that matter
/// at the versions Cargo.lock pins.
#[test]
fn the_sbom_and_the_binary_name_their_crates_at_the_locked_versions() {
    let image = build_and_unpack();
    let wanted: Vec<(&str, String)> = ["kube", "kube-client", "aws-lc-rs", "rustls"]
        .into_iter()
        .map(|c| (c, locked_version(c)))
        .collect();

    let sbom = read_json(&image.dir.join("image.cdx.json"));
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let components = sbom["components"].as_array().expect("SBOM components");
    let in_sbom = |name: &str| -> Vec<String> {
        components
            .iter()
            .filter(|c| c["name"] == name)
            .filter_map(|c| c["version"].as_str().map(str::to_owned))
            .collect()
    };
    for (name, version) in &wanted {
        assert_eq!(in_sbom(name), vec![version.clone()], "{name} in the SBOM");
    }
    assert!(
        in_sbom("jsonwebtoken").is_empty() && in_sbom("proptest").is_empty(),
        "the SBOM lists what ships, not the test-only crates"
    );

    // The packed binary (the tested one, debug sections stripped).
    let binary = image.rootfs.join("jwks-operator");
    match auditable_info::audit_info_from_file(&binary, Default::default()) {
        Ok(info) => {
            for (name, version) in &wanted {
                let found: Vec<String> = info
                    .packages
                    .iter()
                    .filter(|p| p.name == *name)
                    .map(|p| p.version.to_string())
                    .collect();
                assert_eq!(found, vec![version.clone()], "{name} in the binary's list");
            }
        }
        // scripts/test.sh (and so CI) builds the tests with `cargo auditable`
        // and sets JWKS_REQUIRE_AUDITABLE; a plain `cargo test` has no list
        // to check (README "Run the tests").
        Err(e) if std::env::var_os("JWKS_REQUIRE_AUDITABLE").is_none() => {
            eprintln!(
                "skipped: the test binary was not built by `cargo auditable` ({e}); \
                 bash scripts/test.sh builds it so"
            );
        }
        Err(e) => panic!("the binary carries no dependency list: {e}"),
    }
    std::fs::remove_dir_all(&image.dir).unwrap();
}
