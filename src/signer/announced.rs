//! The largest `maxTokenTTL` ever announced to a kube-apiserver from this
//! state directory.
//!
//! kube-apiserver reads Metadata once, at start, and keeps minting tokens
//! that long until it restarts, whatever the signer is told later. So when a
//! policy's `maxTokenTTL` is lowered, tokens of the old lifetime keep being
//! asked for, and keys must still be retained for them. Every signer records
//! what it announces in `<state-dir>/.signer/<namespace>/<name>.json`
//! (`{"maxAnnouncedTokenTTLSeconds": N}`, only ever raised, written under a
//! lock, atomically) before it serves; retention and Sign's cap use the
//! recorded maximum. `.signer` cannot clash with a namespace directory
//! (namespace names never start with a dot). To really lower the bound,
//! restart every kube-apiserver against the lowered policy, then delete the
//! file and restart the signers.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::PolicyRef;

#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(rename = "maxAnnouncedTokenTTLSeconds")]
    max_announced_token_ttl_seconds: u64,
}

/// The record of one policy in one state directory.
#[derive(Clone, Debug)]
pub struct Announced {
    dir: PathBuf,
    file: PathBuf,
}

impl Announced {
    /// The record of `policy` under `state_dir` (not touched yet).
    pub fn new(state_dir: &Path, policy: &PolicyRef) -> Self {
        let dir = state_dir.join(".signer").join(&policy.namespace);
        let file = dir.join(format!("{}.json", policy.name));
        Announced { dir, file }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The recorded maximum, if any. An unreadable record is an error: it
    /// is never silently replaced by a smaller value.
    pub fn read(&self) -> std::io::Result<Option<Duration>> {
        match fs::read(&self.file) {
            Ok(bytes) => {
                let r: Record = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", self.file.display()),
                    )
                })?;
                Ok(Some(Duration::from_secs(r.max_announced_token_ttl_seconds)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records that `ttl` is (about to be) announced; returns the maximum
    /// ever recorded, `ttl` included.
    pub fn record(&self, ttl: Duration) -> std::io::Result<Duration> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let lock = File::open(&self.dir)?;
        lock.lock()?;
        let max = match self.read()? {
            Some(recorded) if recorded >= ttl => return Ok(recorded),
            _ => ttl,
        };
        let tmp = self.dir.join(format!(".{}.tmp", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let bytes = serde_json::to_vec(&Record {
            max_announced_token_ttl_seconds: max.as_secs(),
        })
        .expect("a record serializes");
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.file)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let a = Announced::new(dir.path(), &PolicyRef::new("kube-system", "sa"));
        assert_eq!(a.read().unwrap(), None);
        assert_eq!(
            a.record(Duration::from_secs(3600)).unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            a.record(Duration::from_secs(900)).unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(a.read().unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(
            a.record(Duration::from_secs(7200)).unwrap(),
            Duration::from_secs(7200)
        );
        assert!(a.path().starts_with(dir.path().join(".signer/kube-system")));
    }

    #[test]
    fn an_unreadable_record_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let a = Announced::new(dir.path(), &PolicyRef::new("ns", "p"));
        fs::create_dir_all(a.path().parent().unwrap()).unwrap();
        fs::write(a.path(), b"garbage").unwrap();
        assert!(a.record(Duration::from_secs(600)).is_err());
        assert_eq!(fs::read(a.path()).unwrap(), b"garbage");
    }
}
