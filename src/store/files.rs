//! The standalone key store: `<state-dir>/<namespace>/<name>/` holding the
//! five files of the Secret layout (see [`layout`]).
//!
//! # Durability
//!
//! Every file is written atomically: a temporary file in the same directory,
//! `fsync`, `rename` over the target, `fsync` of the directory. Files are
//! created `0600`, directories `0700`. A state, namespace or policy
//! directory that already exists keeps its mode (the state directory may be
//! `.` or hold other files), but is refused when another user owns it or
//! every user may write it ([`StoreError::UnsafeDirectory`]). A new
//! directory's entry is `fsync`ed in its parent before anything in it is
//! relied on.
//!
//! Five renames are not one atomic step, and SPEC invariant 5 wants the whole
//! set written as one object, so a save is a small roll-forward transaction:
//!
//! 1. each new file is staged as `.<file>.next` (written, `fsync`ed), then
//!    the directory is `fsync`ed, so the staged entries are durable before
//!    the marker that tells recovery to install them (without it a crash
//!    could persist the marker's rename but not the staged names, and
//!    recovery would install a partial set);
//! 2. the commit marker `.commit` is written atomically (temp, `fsync`,
//!    rename, directory `fsync`): from here on the new set is the stored one;
//! 3. each staged file is renamed over its target; directory `fsync`;
//! 4. `.commit` is removed; directory `fsync`.
//!
//! Before every load and save, an interrupted save is finished: with a
//! `.commit` marker the remaining staged files are renamed into place (roll
//! forward), without one they are deleted (the old set was never touched).
//! So a crash at any point leaves either the old or the new set, never a mix,
//! and at rest the directory holds exactly the five files.
//!
//! # Version precondition
//!
//! The store's version is the `generation` counter in `lifecycle.json`
//! ([`FileVersion`]), incremented by every save; `0` stands for a foreign
//! `jwks.json` without `lifecycle.json` (adoptable). A save takes an exclusive
//! `flock` on the policy directory, finishes any interrupted save, decodes
//! what is stored and compares its generation with the caller's expectation
//! before writing anything. Generations rather than file mtimes: they survive
//! copies and backups and do not depend on timestamp granularity. What cannot
//! be decoded is never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layout::{self, DATA_KEYS, Decoded};
use super::{KeyStore, Loaded, StoreError, StoredKeySet};
use crate::keys::redacted::RedactedBytes;
use crate::names::{is_dns_label, is_dns_subdomain};

/// Mode of every file written.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory created.
pub const DIR_MODE: u32 = 0o700;
/// A stored file larger than this is not read (it is not one of ours).
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

const COMMIT: &str = ".commit";
const COMMIT_TMP: &str = ".commit.tmp";

fn staged(data_key: &str) -> String {
    format!(".{data_key}.next")
}

/// The version of a standalone key set: `lifecycle.json`'s `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileVersion(pub u64);

impl std::fmt::Display for FileVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "generation {}", self.0)
    }
}

/// A state directory: one subdirectory per namespace, one per policy inside.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
}

// === impl FileStore ===

impl FileStore {
    /// Opens the state directory `root`: creates it `0700` if needed, and
    /// refuses an existing one another user owns or every user may write.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        private_dir(&root)?;
        Ok(FileStore { root })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store of policy `namespace/name`. Both must be valid Kubernetes
    /// names (which rules out `..`, `/` and other path tricks).
    pub fn policy(&self, namespace: &str, name: &str) -> Result<PolicyDir, InvalidName> {
        if !is_dns_label(namespace) {
            return Err(InvalidName(format!(
                "namespace {namespace:?} is not a valid Kubernetes namespace name"
            )));
        }
        if !is_dns_subdomain(name) {
            return Err(InvalidName(format!(
                "name {name:?} is not a valid Kubernetes object name"
            )));
        }
        let dir = self.root.join(namespace).join(name);
        Ok(PolicyDir {
            inner: Arc::new(Inner {
                location: dir.display().to_string(),
                namespace_dir: self.root.join(namespace),
                dir,
            }),
        })
    }

    /// Holds an exclusive lock on the whole state directory for as long as the
    /// returned guard lives, so two processes never manage the same keys.
    /// Fails at once if another process holds it.
    pub fn lock_exclusive(&self) -> Result<StateLock, StoreError> {
        let dir = File::open(&self.root).map_err(StoreError::io("open", &self.root))?;
        match dir.try_lock() {
            Ok(()) => Ok(StateLock { _dir: dir }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                location: self.root.display().to_string(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io("lock", &self.root)(e)),
        }
    }
}

/// Keeps the state directory locked; unlocks when dropped.
#[derive(Debug)]
pub struct StateLock {
    _dir: File,
}

/// A namespace or policy name that cannot be a directory name here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

/// One policy's directory, `<state-dir>/<namespace>/<name>/`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PolicyDir {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    namespace_dir: PathBuf,
    location: String,
}

// === impl PolicyDir ===

impl PolicyDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether a key set is stored here (its `lifecycle.json` exists, or
    /// an interrupted save is about to install one): a cheap check, without
    /// the lock, for a set deleted behind the process's back.
    pub fn holds_a_set(&self) -> bool {
        let dir = &self.inner.dir;
        dir.join(layout::LIFECYCLE).exists() || dir.join(COMMIT).exists()
    }

    /// [`KeyStore::load`], blocking the calling thread.
    pub fn load_blocking(&self) -> Result<Loaded<FileVersion>, StoreError> {
        if !self.inner.dir.exists() {
            return Ok(Loaded::Empty { version: None });
        }
        let _lock = self.lock()?;
        self.recover()?;
        Ok(match self.read()? {
            // A directory emptied by hand is no different from a deleted one:
            // a save expects nothing stored.
            Ok(Decoded::Empty) => Loaded::Empty { version: None },
            Ok(Decoded::Keys { set, generation }) => Loaded::Keys {
                set,
                version: FileVersion(generation),
            },
            Ok(Decoded::Adoptable(keys)) => Loaded::Adoptable {
                keys,
                version: FileVersion(0),
            },
            Err(e) => Loaded::Corrupt(e),
        })
    }

    /// [`KeyStore::save`], blocking the calling thread.
    pub fn save_blocking(
        &self,
        set: &StoredKeySet,
        expected: Option<&FileVersion>,
    ) -> Result<FileVersion, StoreError> {
        let dir = &self.inner.dir;
        private_dir(&self.inner.namespace_dir)?;
        private_dir(dir)?;
        let _lock = self.lock()?;
        self.recover()?;
        let found = match self.read()? {
            Ok(Decoded::Empty) => None,
            Ok(Decoded::Keys { generation, .. }) => Some(FileVersion(generation)),
            Ok(Decoded::Adoptable(_)) => Some(FileVersion(0)),
            Err(error) => {
                return Err(StoreError::Corrupt {
                    location: self.inner.location.clone(),
                    error,
                });
            }
        };
        if found.as_ref() != expected {
            let show = |v: Option<&FileVersion>| v.map_or("none".to_string(), |v| v.to_string());
            return Err(StoreError::Conflict {
                location: self.inner.location.clone(),
                expected: show(expected),
                found: show(found.as_ref()),
            });
        }
        let next = FileVersion(found.map_or(1, |v| v.0 + 1));
        let encoded = layout::encode(set, next.0).map_err(|error| StoreError::Encode {
            location: self.inner.location.clone(),
            error,
        })?;

        // 1. stage; the staged names are durable before the marker names them
        for (key, bytes) in encoded.entries() {
            write_synced(&dir.join(staged(key)), bytes)?;
        }
        sync_dir(dir)?;
        // 2. commit point
        write_synced(&dir.join(COMMIT_TMP), next.0.to_string().as_bytes())?;
        rename(&dir.join(COMMIT_TMP), &dir.join(COMMIT))?;
        sync_dir(dir)?;
        // 3. + 4. install, then forget the marker
        self.roll_forward()?;
        Ok(next)
    }

    /// Exclusive `flock` on the directory itself (no lock file to leave behind).
    fn lock(&self) -> Result<File, StoreError> {
        let dir = &self.inner.dir;
        let f = File::open(dir).map_err(StoreError::io("open", dir))?;
        f.lock().map_err(StoreError::io("lock", dir))?;
        Ok(f)
    }

    /// Finishes or discards an interrupted save.
    fn recover(&self) -> Result<(), StoreError> {
        let dir = &self.inner.dir;
        if dir.join(COMMIT).exists() {
            return self.roll_forward();
        }
        let mut removed = false;
        for name in DATA_KEYS
            .iter()
            .map(|k| staged(k))
            .chain([COMMIT_TMP.to_string()])
        {
            let path = dir.join(&name);
            if path.exists() {
                fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Renames the staged files present over their targets, then removes the
    /// commit marker.
    fn roll_forward(&self) -> Result<(), StoreError> {
        let dir = &self.inner.dir;
        for key in DATA_KEYS {
            let from = dir.join(staged(key));
            if from.exists() {
                rename(&from, &dir.join(key))?;
            }
        }
        sync_dir(dir)?;
        let commit = dir.join(COMMIT);
        fs::remove_file(&commit).map_err(StoreError::io("remove", &commit))?;
        sync_dir(dir)
    }

    /// Reads and decodes the five files. Outer error: I/O; inner: content.
    fn read(&self) -> Result<Result<Decoded, layout::DecodeError>, StoreError> {
        let mut files: Vec<(&'static str, RedactedBytes)> = Vec::with_capacity(5);
        for key in DATA_KEYS {
            let path = self.inner.dir.join(key);
            match read_capped(&path) {
                Ok(Some(bytes)) => files.push((key, bytes)),
                Ok(None) => {
                    return Ok(Err(layout::DecodeError {
                        data_key: key,
                        problem: format!("larger than {MAX_FILE_SIZE} bytes"),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("read", path)(e)),
            }
        }
        Ok(layout::decode(|k| {
            files
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, b)| b.expose().as_slice())
        }))
    }
}

impl KeyStore for PolicyDir {
    type Version = FileVersion;
    type Error = StoreError;

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    async fn load(&self) -> Result<Loaded<FileVersion>, StoreError> {
        let this = self.clone();
        blocking(move || this.load_blocking()).await
    }

    fn unreadable(&self, error: layout::DecodeError) -> StoreError {
        StoreError::Unreadable {
            path: self.inner.dir.join(error.data_key),
            problem: error.problem,
        }
    }

    async fn save(
        &self,
        set: &StoredKeySet,
        expected: Option<&FileVersion>,
    ) -> Result<FileVersion, StoreError> {
        let this = self.clone();
        let set = set.clone();
        let expected = expected.copied();
        blocking(move || this.save_blocking(&set, expected.as_ref())).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            op: "run file I/O task",
            path: PathBuf::new(),
            error: std::io::Error::other(e.to_string()),
        })
    })
}

// === file helpers ===

// The file operations of this thread, in order: the seam through which the
// tests check the durability order (fsyncs before the commit marker). Only
// recorded in test builds.
#[cfg(test)]
thread_local! {
    static TRACE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn trace(op: &str, path: &Path) {
    #[cfg(test)]
    TRACE.with(|t| t.borrow_mut().push(format!("{op} {}", path.display())));
    #[cfg(not(test))]
    let _ = (op, path);
}

/// Takes this thread's recorded file operations (`mkdir P`, `fsync P`,
/// `fsync-dir P`, `rename TO`).
#[cfg(test)]
pub(crate) fn take_trace() -> Vec<String> {
    TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// Makes sure `path` is a directory fit to hold private keys: creates it
/// (and missing parents) `0700`, each new entry `fsync`ed in its parent.
/// An existing directory is never changed (it may be `.` or a directory
/// shared with other files): it is refused when another user owns it or
/// every user may write it (sticky bit or not: another user could create
/// or swap the namespace and policy directories inside), see
/// [`check_existing_dir`].
fn private_dir(path: &Path) -> Result<(), StoreError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => check_existing_dir(path, &meta),
        Ok(_) => Err(StoreError::io("create directory", path)(
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dir(path),
        Err(e) => Err(StoreError::io("stat", path)(e)),
    }
}

/// Refuses an existing directory another user owns or every user may
/// write; leaves its mode as it is otherwise (files in it are `0600` and
/// directories this process creates in it `0700`).
fn check_existing_dir(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt as _;
    let unsafe_dir = |problem: String| StoreError::UnsafeDirectory {
        path: path.to_owned(),
        problem,
    };
    let owner = meta.uid();
    let me = rustix::process::geteuid().as_raw();
    if owner != me {
        return Err(unsafe_dir(format!(
            "is owned by uid {owner}, not by this process's uid {me}: its owner could read or replace the private keys"
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by every user (mode {mode:o}): another user could create or replace the directories that hold the private keys; use a private directory (for example `mkdir -m 700`)"
        )));
    }
    Ok(())
}

/// Creates `path` and its missing parents, `0700`, and `fsync`s each new
/// entry in its parent directory.
fn create_dir(path: &Path) -> Result<(), StoreError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.exists() {
        create_dir(parent)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => trace("mkdir", path),
        // Created meanwhile by another process: its creator syncs it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StoreError::io("create directory", path)(e)),
    }
    // The umask can only remove bits; make the mode exact anyway.
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
        .map_err(StoreError::io("chmod", path))?;
    sync_dir(parent)
}

/// Writes `bytes` to a new file at `path` (replacing a stale one), mode 0600, fsynced.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(StoreError::io("create", path))?;
    // The umask can only remove bits; make the mode exact anyway.
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(StoreError::io("chmod", path))?;
    f.write_all(bytes).map_err(StoreError::io("write", path))?;
    f.sync_all().map_err(StoreError::io("fsync", path))?;
    trace("fsync", path);
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(StoreError::io("rename", to))?;
    trace("rename", to);
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))?;
    trace("fsync-dir", dir);
    Ok(())
}

/// The file's bytes; `Ok(None)` when it is larger than [`MAX_FILE_SIZE`].
fn read_capped(path: &Path) -> std::io::Result<Option<RedactedBytes>> {
    let f = File::open(path)?;
    // Sized up front so the buffer holding private material is not
    // reallocated (leaving unwiped copies) while reading.
    let len = f.metadata()?.len().min(MAX_FILE_SIZE + 1);
    let mut buf = Vec::with_capacity(len as usize + 1);
    f.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf)?;
    let buf = RedactedBytes::new(buf);
    if buf.expose().len() as u64 > MAX_FILE_SIZE {
        return Ok(None);
    }
    Ok(Some(buf))
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
