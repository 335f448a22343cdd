//! Tests of the standalone file store: layout on disk, modes, the version
//! precondition, crash recovery, and that a corrupt state is never touched.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::*;
use crate::store::layout::{ACTIVE_KID, JWKS, LIFECYCLE};
use crate::store::testing::{fixture, one_key_set, three_key_set};
use crate::store::{Loaded, StoreError};

fn store() -> (tempfile::TempDir, FileStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("state")).unwrap();
    (tmp, store)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[path = "../../tests/common/state_dir.rs"]
mod state_dir;
use state_dir::{STATE_FILES as FIVE, file_names as names, files as snapshot};

#[test]
fn nothing_stored_loads_empty_and_creates_nothing() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    assert!(matches!(
        dir.load_blocking().unwrap(),
        Loaded::Empty { version: None }
    ));
    assert!(!dir.path().exists());
}

#[test]
fn save_writes_exactly_five_private_files_in_private_directories() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    let v = dir.save_blocking(&three_key_set(), None).unwrap();
    assert_eq!(v, FileVersion(1));
    assert_eq!(dir.path(), store.root().join("default").join("demo"));
    assert_eq!(names(dir.path()), FIVE);
    for f in FIVE {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    for d in [store.root(), &store.root().join("default"), dir.path()] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    match dir.load_blocking().unwrap() {
        Loaded::Keys { set, version } => {
            assert_eq!(set, three_key_set());
            assert_eq!(version, FileVersion(1));
        }
        other => panic!("expected keys, got {other:?}"),
    }
}

#[test]
fn saves_are_conditional_on_the_version_read() {
    let (_tmp, store) = store();
    let dir = store.policy("ns", "p").unwrap();
    let v1 = dir.save_blocking(&one_key_set(), None).unwrap();
    // Someone else already created it.
    let err = dir.save_blocking(&one_key_set(), None).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.is_transient());
    let v2 = dir.save_blocking(&three_key_set(), Some(&v1)).unwrap();
    assert_eq!(v2, FileVersion(2));
    // A writer that planned from v1 loses.
    let before = snapshot(dir.path());
    let err = dir.save_blocking(&one_key_set(), Some(&v1)).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected version generation 1, found generation 2"),
        "{err}"
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused save writes nothing"
    );
}

#[test]
fn a_corrupt_state_is_reported_and_never_overwritten() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    let v1 = dir.save_blocking(&three_key_set(), None).unwrap();
    for (file, garbage) in [
        (LIFECYCLE, &b"{\"formatVersion\": 1, \"keys\": ["[..]),
        (JWKS, b"not json"),
        (ACTIVE_KID, b"someone-else"),
    ] {
        let good = fs::read(dir.path().join(file)).unwrap();
        fs::write(dir.path().join(file), garbage).unwrap();
        let before = snapshot(dir.path());

        match dir.load_blocking().unwrap() {
            Loaded::Corrupt(e) => assert_eq!(e.data_key, file, "{e}"),
            other => panic!("{file}: expected corrupt, got {other:?}"),
        }
        for expected in [None, Some(&v1)] {
            let err = dir.save_blocking(&one_key_set(), expected).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(!err.is_transient());
            assert_eq!(err.reason(), "StateCorrupt");
            assert!(err.to_string().contains(file), "{err}");
        }
        assert_eq!(snapshot(dir.path()), before, "{file}: state was modified");
        fs::write(dir.path().join(file), good).unwrap();
    }
}

#[test]
fn a_save_interrupted_before_its_commit_leaves_the_old_set() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    dir.save_blocking(&one_key_set(), None).unwrap();
    // A crash while staging: some staged files, no commit marker.
    let encoded = layout::encode(&three_key_set(), 2).unwrap();
    for (key, bytes) in encoded.entries().into_iter().take(3) {
        fs::write(dir.path().join(staged(key)), bytes).unwrap();
    }
    fs::write(dir.path().join(COMMIT_TMP), b"2").unwrap();
    match dir.load_blocking().unwrap() {
        Loaded::Keys { set, version } => {
            assert_eq!(set, one_key_set());
            assert_eq!(version, FileVersion(1));
        }
        other => panic!("expected the old set, got {other:?}"),
    }
    assert_eq!(names(dir.path()), FIVE, "staged files are cleaned up");
}

#[test]
fn a_save_interrupted_after_its_commit_is_finished() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    dir.save_blocking(&one_key_set(), None).unwrap();
    // A crash after the commit marker and two of the five renames.
    let encoded = layout::encode(&three_key_set(), 2).unwrap();
    for (key, bytes) in encoded.entries() {
        fs::write(dir.path().join(staged(key)), bytes).unwrap();
    }
    fs::write(dir.path().join(COMMIT), b"2").unwrap();
    for key in [JWKS, LIFECYCLE] {
        fs::rename(dir.path().join(staged(key)), dir.path().join(key)).unwrap();
    }
    match dir.load_blocking().unwrap() {
        Loaded::Keys { set, version } => {
            assert_eq!(set, three_key_set());
            assert_eq!(version, FileVersion(2));
        }
        other => panic!("expected the new set, got {other:?}"),
    }
    assert_eq!(names(dir.path()), FIVE);
}

#[test]
fn a_foreign_key_set_is_adoptable_at_version_zero() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "legacy").unwrap();
    fs::create_dir_all(dir.path()).unwrap();
    let jwks =
        crate::keys::material::private_jwks_json([
            fixture(crate::keys::alg::Algorithm::ES256).as_ref()
        ]);
    fs::write(dir.path().join(JWKS), jwks.expose()).unwrap();
    let version = match dir.load_blocking().unwrap() {
        Loaded::Adoptable { keys, version } => {
            assert_eq!(keys.len(), 1);
            version
        }
        other => panic!("expected adoptable, got {other:?}"),
    };
    assert_eq!(version, FileVersion(0));
    assert!(matches!(
        dir.save_blocking(&one_key_set(), None),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        dir.save_blocking(&one_key_set(), Some(&version)).unwrap(),
        FileVersion(1)
    );
    assert_eq!(names(dir.path()), FIVE);
}

#[test]
fn names_cannot_escape_the_state_directory() {
    let (_tmp, store) = store();
    for (ns, name) in [
        ("..", "x"),
        ("default", ".."),
        ("a/b", "x"),
        ("default", "x/../../etc"),
        ("Default", "x"),
        ("", "x"),
        ("default", ""),
        ("has.dot", "x"),
    ] {
        assert!(store.policy(ns, name).is_err(), "{ns}/{name}");
    }
    assert!(store.policy("kube-system", "a.b-c").is_ok());
}

#[test]
fn one_process_per_state_directory() {
    let (_tmp, store) = store();
    let held = store.lock_exclusive().unwrap();
    let err = store.lock_exclusive().unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(held);
    store.lock_exclusive().unwrap();
}

#[tokio::test]
async fn the_async_store_does_the_same() {
    use crate::store::KeyStore as _;
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    assert!(matches!(
        dir.load().await.unwrap(),
        Loaded::Empty { version: None }
    ));
    let v = dir.save(&one_key_set(), None).await.unwrap();
    assert!(matches!(dir.load().await.unwrap(), Loaded::Keys { version, .. } if version == v));
    assert!(dir.location().ends_with("state/default/demo"));
}

#[test]
fn an_existing_state_directory_keeps_its_mode_and_what_else_it_holds() {
    // `--state-dir .` or a directory shared with other files: never chmodded.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let other = root.join("notes.txt");
    fs::write(&other, "not ours").unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();

    let store = FileStore::open(&root).unwrap();
    let dir = store.policy("default", "demo").unwrap();
    dir.save_blocking(&one_key_set(), None).unwrap();
    assert_eq!(mode(&root), 0o755, "an existing directory keeps its mode");
    assert_eq!(mode(&other), 0o644);
    assert_eq!(fs::read_to_string(&other).unwrap(), "not ours");
    // What the store creates is private.
    assert_eq!(mode(&root.join("default")), 0o700);
    assert_eq!(mode(dir.path()), 0o700);
    // An existing namespace or policy directory keeps its mode too.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
    let v = dir
        .save_blocking(&three_key_set(), Some(&FileVersion(1)))
        .unwrap();
    assert_eq!(v, FileVersion(2));
    assert_eq!(mode(dir.path()), 0o750);
}

#[test]
fn a_world_writable_directory_is_refused_with_a_clear_error_naming_it() {
    for world_writable in [0o777, 0o1777, 0o757] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("state");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(world_writable)).unwrap();
        let e = FileStore::open(&root).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StoreError::UnsafeDirectory { .. }), "{e:?}");
        assert!(text.starts_with(&root.display().to_string()), "{text}");
        assert!(text.contains("writable by every user"), "{text}");
        assert_eq!(e.reason(), "StateDirectoryUnsafe");
        assert!(!e.is_transient());
        let now = fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(now, world_writable, "the directory is left as it was");
    }

    // A namespace directory that turned world-writable: the save is refused.
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    dir.save_blocking(&one_key_set(), None).unwrap();
    let ns = store.root().join("default");
    fs::set_permissions(&ns, fs::Permissions::from_mode(0o777)).unwrap();
    let e = dir
        .save_blocking(&three_key_set(), Some(&FileVersion(1)))
        .unwrap_err();
    assert!(e.to_string().starts_with(&ns.display().to_string()), "{e}");
    assert_eq!(mode(&ns), 0o777);
}

/// The uid of `nobody`, which owns the directories of another user here.
const NOBODY: u32 = 65534;

#[test]
fn a_directory_owned_by_another_user_is_refused_with_a_clear_error_naming_it() {
    // The tests run as root, so they can give a directory away.
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root to chown"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&root, Some(NOBODY), Some(NOBODY)).unwrap();
    let e = FileStore::open(&root).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, StoreError::UnsafeDirectory { .. }), "{e:?}");
    assert!(text.starts_with(&root.display().to_string()), "{text}");
    assert!(text.contains("owned by uid 65534"), "{text}");

    // A policy directory someone else slipped in first.
    let (_tmp, store) = store();
    let policy_dir = store.root().join("default").join("demo");
    fs::create_dir_all(&policy_dir).unwrap();
    std::os::unix::fs::chown(&policy_dir, Some(NOBODY), None).unwrap();
    let dir = store.policy("default", "demo").unwrap();
    let e = dir.save_blocking(&one_key_set(), None).unwrap_err();
    assert!(
        e.to_string().starts_with(&policy_dir.display().to_string()),
        "{e}"
    );
    assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    assert!(names(&policy_dir).is_empty(), "nothing written into it");
}

/// Position of the first trace line equal to `line`.
fn position(trace: &[String], line: &str) -> usize {
    trace
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} not in {trace:#?}"))
}

#[test]
fn a_save_makes_every_entry_durable_before_the_commit_marker_names_it() {
    let (_tmp, store) = store();
    let dir = store.policy("default", "demo").unwrap();
    let root = store.root().to_owned();
    let ns = root.join("default");
    let p = dir.path().to_owned();
    take_trace();
    dir.save_blocking(&one_key_set(), None).unwrap();
    let trace = take_trace();
    let at = |line: String| position(&trace, &line);
    let commit = at(format!("rename {}", p.join(".commit").display()));

    // New directories: each entry is fsynced in its parent before the commit.
    assert!(at(format!("mkdir {}", ns.display())) < at(format!("fsync-dir {}", root.display())));
    assert!(at(format!("fsync-dir {}", root.display())) < commit);
    assert!(at(format!("mkdir {}", p.display())) < at(format!("fsync-dir {}", ns.display())));
    assert!(at(format!("fsync-dir {}", ns.display())) < commit);

    // Staged files: their data and their directory entries are durable
    // before the marker that makes recovery roll them forward.
    let staged: Vec<usize> = FIVE
        .iter()
        .map(|f| at(format!("fsync {}", p.join(format!(".{f}.next")).display())))
        .collect();
    let last_staged = *staged.iter().max().unwrap();
    let dir_synced_after_staging = trace[last_staged..commit]
        .iter()
        .any(|l| *l == format!("fsync-dir {}", p.display()));
    assert!(
        dir_synced_after_staging,
        "no directory fsync between staging and the commit marker: {trace:#?}"
    );
    // And the marker itself is durable before anything is installed.
    let install = at(format!("rename {}", p.join("jwks.json").display()));
    assert!(
        trace[commit..install]
            .iter()
            .any(|l| *l == format!("fsync-dir {}", p.display()))
    );
}
