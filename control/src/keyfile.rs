//! Reading files that hold secrets (the store's passphrase file, later wg-quick configurations
//! with private keys): a file that other users can read is refused before a byte of it is read,
//! with the `chmod` that fixes it.
//!
//! The check looks at the permission bits, not at `access(2)`: the daemon usually runs as root,
//! for whom `access` says yes to everything. Symbolic links are followed and the file they lead to
//! is checked, on the opened descriptor itself (`fstat`), so the file checked is the file read.
//! It is opened with `O_NONBLOCK`, so a FIFO put in its place cannot hang the reader; anything
//! but a regular file is refused.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The largest secret file read (1 MiB): a passphrase or a configuration is far smaller.
pub const MAX_SECRET_FILE_LEN: u64 = 1 << 20;

/// Permission bits that let other users read a file: group-read and other-read.
const READABLE_BY_OTHERS: u32 = 0o044;
/// Other-read only (see [`read_credential_file`]).
const READABLE_BY_ANYONE: u32 = 0o004;

/// Why a secret file was not read. Messages name the file and never contain its content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file (or the file a symbolic link points to) does not exist.
    #[error("cannot read {}: no such file", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file's mode lets users other than its owner read it.
    #[error(
        "refusing to read {}: it holds a secret and is readable by other users (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        shell_quote(path)
    )]
    ReadableByOthers {
        /// The path as given.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory, device, FIFO or socket.
    #[error("refusing to read {}: it is not a regular file", path.display())]
    NotAFile {
        /// The path as given.
        path: PathBuf,
    },
    /// Larger than [`MAX_SECRET_FILE_LEN`].
    #[error("refusing to read {}: it is larger than {limit} bytes, too large to be a secret file", path.display())]
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// Any other failure (permission denied, I/O error).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

/// Reads a file that holds a secret, refusing it if its mode has the group-read or other-read
/// bit (mask `0o044`): `0600` and `0400` pass, `0640` and `0644` do not. The content comes back in
/// a buffer that is wiped on drop.
///
/// # Errors
/// [`KeyFileError::ReadableByOthers`] (checked before reading), [`KeyFileError::NotFound`],
/// [`KeyFileError::NotAFile`], [`KeyFileError::TooLarge`], [`KeyFileError::Io`].
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    read_checked(path, READABLE_BY_OTHERS)
}

/// Reads a systemd credential (a file under `$CREDENTIALS_DIRECTORY`): like
/// [`read_secret_file`], except that the group-read bit is accepted; other-read is still refused.
///
/// Why: systemd writes each credential with mode `0400` and then, when the service runs as
/// another user, grants that user read access with a POSIX ACL entry (`user:<uid>:r`;
/// `write_credential()` in systemd's `src/core/exec-credential.c`). With an ACL, the group bits of
/// the file's mode show the ACL *mask*, so the file reads as `0440` although its owning group has
/// no access (`group::---`). The directory itself is private to the service. Only use this for
/// paths inside the credentials directory.
///
/// # Errors
/// As [`read_secret_file`].
pub fn read_credential_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    read_checked(path, READABLE_BY_ANYONE)
}

fn read_checked(path: &Path, forbidden: u32) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => KeyFileError::NotFound { path: path.to_path_buf() },
        _ => KeyFileError::Io { path: path.to_path_buf(), source },
    };
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile { path: path.to_path_buf() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(KeyFileError::ReadableByOthers { path: path.to_path_buf(), mode });
    }
    let too_large = || KeyFileError::TooLarge { path: path.to_path_buf(), limit: MAX_SECRET_FILE_LEN };
    if meta.len() > MAX_SECRET_FILE_LEN {
        return Err(too_large());
    }
    // Sized up front so the buffer is not reallocated (which would leave an unwiped copy) unless
    // the file grows while it is read.
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    (&file).take(MAX_SECRET_FILE_LEN + 1).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(too_large());
    }
    Ok(buf)
}

/// The path as a shell word, for the `chmod` hint.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn file_with_mode(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, b"secret\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn credential_files_may_be_group_readable_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(&read_credential_file(&file_with_mode(dir.path(), "a", 0o440)).unwrap()[..], b"secret\n");
        assert_eq!(&read_credential_file(&file_with_mode(dir.path(), "b", 0o400)).unwrap()[..], b"secret\n");
        assert!(matches!(
            read_credential_file(&file_with_mode(dir.path(), "c", 0o444)),
            Err(KeyFileError::ReadableByOthers { mode: 0o444, .. })
        ));
        assert!(matches!(
            read_secret_file(&file_with_mode(dir.path(), "d", 0o440)),
            Err(KeyFileError::ReadableByOthers { mode: 0o440, .. })
        ));
    }

    #[test]
    fn refuses_non_files_and_quotes_odd_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_secret_file(dir.path()), Err(KeyFileError::NotAFile { .. })));
        let p = file_with_mode(dir.path(), "it's here", 0o644);
        let msg = read_secret_file(&p).unwrap_err().to_string();
        assert!(msg.contains(r"chmod 600 '"), "{msg}");
        assert!(msg.contains(r"it'\''s here'"), "{msg}");
    }

    #[test]
    fn refuses_a_fifo_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg("-m").arg("600").arg(&p).status();
        if !status.is_ok_and(|s| s.success()) {
            return; // no mkfifo here: nothing to test
        }
        assert!(matches!(read_secret_file(&p), Err(KeyFileError::NotAFile { .. })));
    }

    #[test]
    fn refuses_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        fs::write(&p, vec![b'x'; MAX_SECRET_FILE_LEN as usize + 1]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read_secret_file(&p), Err(KeyFileError::TooLarge { .. })));
    }
}
