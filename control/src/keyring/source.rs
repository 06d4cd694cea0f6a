//! Where the passphrase comes from, and creating a passphrase file.
//!
//! Sources, first found wins:
//!
//! 1. the environment variable `VPN_PASSPHRASE` (when set and non-empty). The weakest: the
//!    environment of a process is readable by root and the same user (`/proc/<pid>/environ`)
//!    and is inherited by children; prefer a file or a credential;
//! 2. the file named by `VPN_PASSPHRASE_FILE` (when set and non-empty; a missing file is an
//!    error, since it was asked for);
//! 3. the systemd credential `vpn-passphrase`, i.e. `$CREDENTIALS_DIRECTORY/vpn-passphrase`
//!    (`LoadCredential=vpn-passphrase:/etc/vpn/passphrase` or `LoadCredentialEncrypted=`);
//!    skipped when that directory has no such credential;
//! 4. the default file (e.g. `/etc/vpn/passphrase`); none there means no passphrase.
//!
//! Files are read with [`read_secret_file`](crate::keyfile::read_secret_file), which refuses a
//! file that other users can read (credentials with
//! [`read_credential_file`](crate::keyfile::read_credential_file)); one trailing newline (`\n` or
//! `\r\n`) is removed, as editors and `echo` add one. An empty passphrase is an error.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::{KeyringError, Passphrase};
use crate::keyfile::{read_credential_file, read_secret_file, KeyFileError};

/// The environment variable holding the passphrase itself.
pub const PASSPHRASE_ENV: &str = "VPN_PASSPHRASE";
/// The environment variable naming a passphrase file.
pub const PASSPHRASE_FILE_ENV: &str = "VPN_PASSPHRASE_FILE";
/// The environment variable systemd sets to the service's credentials directory.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The name of the systemd credential holding the passphrase.
pub const PASSPHRASE_CREDENTIAL: &str = "vpn-passphrase";

/// Where a passphrase was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The environment variable `VPN_PASSPHRASE`.
    Env,
    /// The file named by `VPN_PASSPHRASE_FILE`.
    EnvFile(PathBuf),
    /// The systemd credential `vpn-passphrase` (its path in the credentials directory).
    Credential(PathBuf),
    /// The default passphrase file.
    File(PathBuf),
}

impl fmt::Display for PassphraseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => write!(f, "environment variable {PASSPHRASE_ENV}"),
            Self::EnvFile(p) => write!(f, "file {} (from {PASSPHRASE_FILE_ENV})", p.display()),
            Self::Credential(p) => write!(f, "systemd credential {PASSPHRASE_CREDENTIAL} ({})", p.display()),
            Self::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// Finds the passphrase in the process environment and files; see the module docs for the order.
/// `Ok(None)` when no source has one.
///
/// # Errors
/// [`KeyringError::EmptyPassphrase`]; [`KeyringError::PassphraseFile`] when a file is readable by
/// other users or cannot be read, or when the file named by `VPN_PASSPHRASE_FILE` is missing.
pub fn find_passphrase(default_file: &Path) -> Result<Option<(Passphrase, PassphraseSource)>, KeyringError> {
    find_passphrase_with_env(default_file, |name| std::env::var_os(name))
}

/// [`find_passphrase`] with the environment given as a function from a variable's name to its
/// value, so that tests need not change the process environment.
///
/// # Errors
/// As [`find_passphrase`].
pub fn find_passphrase_with_env(
    default_file: &Path,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<(Passphrase, PassphraseSource)>, KeyringError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(value) = var(PASSPHRASE_ENV) {
        return Ok(Some((Passphrase::new(value.into_vec()), PassphraseSource::Env)));
    }
    if let Some(file) = var(PASSPHRASE_FILE_ENV) {
        let path = PathBuf::from(file);
        let content = read_secret_file(&path)?;
        return from_file_content(content, PassphraseSource::EnvFile(path)).map(Some);
    }
    if let Some(dir) = var(CREDENTIALS_DIRECTORY_ENV) {
        let path = Path::new(&dir).join(PASSPHRASE_CREDENTIAL);
        match read_credential_file(&path) {
            Err(KeyFileError::NotFound { .. }) => {}
            read => return from_file_content(read?, PassphraseSource::Credential(path)).map(Some),
        }
    }
    match read_secret_file(default_file) {
        Err(KeyFileError::NotFound { .. }) => Ok(None),
        read => from_file_content(read?, PassphraseSource::File(default_file.to_path_buf())).map(Some),
    }
}

/// A file's content as a passphrase: one trailing `\n` or `\r\n` removed, empty refused.
fn from_file_content(mut content: Zeroizing<Vec<u8>>, source: PassphraseSource) -> Result<(Passphrase, PassphraseSource), KeyringError> {
    let len = content.len();
    if content.ends_with(b"\r\n") {
        content.truncate(len - 2);
    } else if content.ends_with(b"\n") {
        content.truncate(len - 1);
    }
    if content.is_empty() {
        return Err(KeyringError::EmptyPassphrase { from: format!("from {source}") });
    }
    // Moves the buffer out (no copy); the emptied `Zeroizing` wrapper has nothing left to wipe.
    Ok((Passphrase::new(std::mem::take(&mut *content)), source))
}

/// Creates a passphrase file holding a fresh random passphrase (see
/// [`Passphrase::generate`]) followed by a newline, with mode `0600`, and returns the passphrase.
///
/// Missing parent directories are created with mode `0700`. The file appears whole or not at all:
/// the passphrase is written to a temporary file in the same directory (created exclusively with
/// mode `0600`), flushed to disk, then linked to `path`, which fails if `path` exists, so an
/// existing file is never replaced, even by a concurrent writer; the directory is then flushed.
///
/// # Errors
/// [`KeyringError::AlreadyExists`] when `path` exists (even as a dangling symbolic link),
/// [`KeyringError::Io`] for any system error (the temporary file is removed).
pub fn create_passphrase_file(path: &Path, rng: &mut dyn CryptoRngCore) -> Result<Passphrase, KeyringError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source: io::Error| KeyringError::Io { path: p, source }
    };
    let exists = || KeyringError::AlreadyExists { path: path.to_path_buf() };
    if path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let name =
        path.file_name().ok_or_else(|| io_err(path)(io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
    }

    let pass = Passphrase::generate(rng);
    let mut content = Zeroizing::new(Vec::with_capacity(pass.as_bytes().len() + 1));
    content.extend_from_slice(pass.as_bytes());
    content.push(b'\n');

    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{:016x}", rng.next_u64()));
    let tmp = dir.join(tmp_name);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io_err(&tmp))?;
    let written = (|| {
        // Exactly 0600 whatever the umask.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(&content)?;
        file.sync_all()
    })()
    .map_err(io_err(&tmp));
    drop(file);
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e) => Err(io_err(path)(e)),
    });
    let removed = fs::remove_file(&tmp).map_err(io_err(&tmp));
    linked?;
    removed?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_source() {
        assert_eq!(PassphraseSource::Env.to_string(), "environment variable VPN_PASSPHRASE");
        assert_eq!(PassphraseSource::File("/etc/vpn/passphrase".into()).to_string(), "file /etc/vpn/passphrase");
        assert_eq!(
            PassphraseSource::Credential("/run/credentials/vpn.service/vpn-passphrase".into()).to_string(),
            "systemd credential vpn-passphrase (/run/credentials/vpn.service/vpn-passphrase)"
        );
        assert_eq!(PassphraseSource::EnvFile("/x".into()).to_string(), "file /x (from VPN_PASSPHRASE_FILE)");
    }

    #[test]
    fn strips_exactly_one_newline() {
        let strip = |b: &[u8]| from_file_content(Zeroizing::new(b.to_vec()), PassphraseSource::Env).map(|(p, _)| p.as_bytes().to_vec());
        assert_eq!(strip(b"pw\n").unwrap(), b"pw");
        assert_eq!(strip(b"pw\r\n").unwrap(), b"pw");
        assert_eq!(strip(b"pw\n\n").unwrap(), b"pw\n");
        assert_eq!(strip(b"pw").unwrap(), b"pw");
        assert_eq!(strip(b" pw \r").unwrap(), b" pw \r");
        assert!(matches!(strip(b"\n"), Err(KeyringError::EmptyPassphrase { .. })));
        assert!(matches!(strip(b"\r\n"), Err(KeyringError::EmptyPassphrase { .. })));
        assert!(matches!(strip(b""), Err(KeyringError::EmptyPassphrase { .. })));
    }
}
