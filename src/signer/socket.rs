//! Binding the signer's Unix socket: mode 0600 from the first moment it is
//! reachable, a stale socket file replaced, a live one never stolen.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Remembers which socket file is ours; [`SocketGuard::remove`] deletes the
/// path if it still is.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    ino: u64,
}

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process accepts connections on the path.
    #[error(
        "{0} is in use: another signer is listening on it (stop it first, or choose another --socket)"
    )]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Anything else.
    #[error("cannot bind {path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
}

/// Binds `path`. An existing socket file nobody listens on (a signer that
/// died) is replaced; one with a live listener, or any other kind of file,
/// is refused. The socket is created inside a fresh 0700 directory next to
/// `path`, set to 0600 and only then renamed into place, so it is never
/// reachable with a wider mode.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketGuard), SocketError> {
    let io_err = |error| SocketError::Io {
        path: path.to_owned(),
        error,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_owned())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "replacing a stale socket file");
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".jwks-signer.{}.tmp", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err)?;
    }
    let tmp = staging.join("sock");
    let result = (|| {
        let listener = UnixListener::bind(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        let ino = fs::symlink_metadata(path)?.ino();
        Ok((
            listener,
            SocketGuard {
                path: path.to_owned(),
                ino,
            },
        ))
    })();
    let _ = fs::remove_dir_all(&staging);
    result.map_err(io_err)
}

impl SocketGuard {
    /// Removes the socket file unless another process has replaced it since.
    pub fn remove(&self) {
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = fs::remove_file(&self.path);
        }
    }
}
