//! Durable files: configuration and key files replaced atomically ([`write_atomic`]), directories
//! created durably ([`create_dir`]), and the lock that serializes writers ([`WriterLock`]).
//!
//! # Atomic replacement
//!
//! [`write_atomic`] replaces a file so that a crash at any instant (`SIGKILL`, power loss) leaves
//! the old content or the new content, never a mix, a truncated file or an empty one:
//!
//! 1. a temporary file `.NAME.tmp-PID-N` is created beside the target, with `O_EXCL` and the
//!    final mode from the start (0600 for anything secret: the content is never readable by
//!    others, not even for an instant);
//! 2. the content is written and `fsync`ed;
//! 3. the temporary file is renamed over the target (`rename(2)` is atomic);
//! 4. the directory is `fsync`ed, so that the rename itself survives a power loss.
//!
//! If any step fails (a full disk, an I/O error) the temporary file is removed and the target is
//! untouched; the error names the file, the step and the system's reason:
//! `cannot write /etc/vpn/vpn.toml: writing the temporary file: No space left on device (os error 28)`.
//! Only a failure of step 4 leaves the new content in place (the rename happened; the error says
//! so). A process killed between steps 1 and 3 leaves its temporary file behind: it is never read
//! and can be deleted.
//!
//! # The writers' lock
//!
//! [`WriterLock`] is an exclusive `flock(2)` on a lock file (0600), held while the value lives.
//! Commands that change state take it first, so that they run one after another; the kernel
//! drops it when its holder exits, even by `SIGKILL`, so a crashed command never leaves a stale
//! lock. The holder's pid is written into the file so that a waiting command can name it.
//!
//! The `flock(2)` call itself is in the crate's `sys` module, with its other `unsafe` code.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The points of [`write_atomic_with`] at which its test hook is called: each right after the
/// step of that name succeeded.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The temporary file exists (empty, with its final mode).
    Created,
    /// The content is written to the temporary file.
    Written,
    /// The temporary file is synced to disk.
    Synced,
    /// The temporary file has been renamed over the target (the directory is not synced yet).
    Renamed,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 4] = [Step::Created, Step::Written, Step::Synced, Step::Renamed];
}

/// Replaces `path` with `contents` atomically and durably; the file gets exactly `mode` (e.g. 0o600).
/// See the [module documentation](self) for the steps and what a failure leaves.
///
/// The parent directory must exist (see [`create_dir`]). If `path` is a symbolic link, the link
/// itself is replaced by a regular file.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, contents, mode, &mut |_| Ok(()))
}

/// [`write_atomic`] with a fault-injection hook, for tests: `hook` is called after each [`Step`];
/// an error it returns is handled exactly as if the next system call had failed with it.
#[doc(hidden)]
pub fn write_atomic_with(path: &Path, contents: &[u8], mode: u32, hook: &mut dyn FnMut(Step) -> io::Result<()>) -> io::Result<()> {
    let fail = |step: &str, e: io::Error| io::Error::new(e.kind(), format!("cannot write {}: {step}: {e}", path.display()));
    let name =
        path.file_name().ok_or_else(|| fail("checking the path", io::Error::new(io::ErrorKind::InvalidInput, "it names no file")))?;
    let dir = parent_dir(path);

    let (mut file, tmp) = create_temporary(dir, name, mode).map_err(|e| fail("creating a temporary file beside it", e))?;
    // From here until the rename, a failure removes the temporary file.
    let staged = (|| {
        hook(Step::Created).map_err(|e| ("writing the temporary file", e))?;
        file.write_all(contents).map_err(|e| ("writing the temporary file", e))?;
        hook(Step::Written).map_err(|e| ("syncing the temporary file to disk", e))?;
        file.sync_all().map_err(|e| ("syncing the temporary file to disk", e))?;
        hook(Step::Synced).map_err(|e| ("renaming the temporary file over it", e))?;
        fs::rename(&tmp, path).map_err(|e| ("renaming the temporary file over it", e))
    })();
    drop(file);
    if let Err((step, e)) = staged {
        // Best effort: the error that matters is the one above.
        let _ = fs::remove_file(&tmp);
        return Err(fail(step, e));
    }
    const DIR_SYNC: &str = "syncing its directory (the new content is in place but may not survive a power loss)";
    hook(Step::Renamed).map_err(|e| fail(DIR_SYNC, e))?;
    sync_dir(dir).map_err(|e| fail(DIR_SYNC, e))
}

/// The directory a path's file lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Creates a new, empty temporary file beside the target, with exactly `mode`.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> io::Result<(File, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp) {
            Ok(file) => {
                // The mode given to open(2) is filtered by the umask; make it exactly `mode`.
                let made = file.metadata().map(|m| m.permissions().mode() & 0o7777);
                if let Err(e) = made.and_then(|m| if m == mode { Ok(()) } else { file.set_permissions(fs::Permissions::from_mode(mode)) }) {
                    drop(file);
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                return Ok((file, tmp));
            }
            // A leftover of a killed process that had the same pid: take another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// `fsync`s a directory, so that the names created, renamed or removed in it are on disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directory `path` and its missing ancestors with `mode` (exactly: not filtered by
/// the umask), and syncs each new directory's parent so that the new names survive a crash. An
/// existing directory is left as it is.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir(parent, mode)?;
    }
    let made = match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode)),
        // Created meanwhile by someone else: fine, it is theirs to set up.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => Err(e),
    };
    made.and_then(|()| sync_dir(parent_dir(path)))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create directory {}: {e}", path.display())))
}

/// An exclusive advisory lock (`flock(2)`, `LOCK_EX`) on a lock file, held until dropped.
/// See the [module documentation](self).
///
/// The lock belongs to this open file: a second [`WriterLock::acquire`] of the same file waits,
/// even in the same process. The file is created 0600 and is never removed (removing it would
/// let two processes lock two different files of the same name).
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
}

/// Why [`WriterLock::acquire`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process (or another lock in this one) held the lock for the whole wait.
    #[error(
        "another vpn command{} is changing the same state (it holds {}); gave up after {waited:.1?}: wait for it to finish and try again",
        .holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        .path.display()
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The pid the holder recorded in the file, when it could be read.
        holder: Option<u32>,
        /// How long this acquire waited.
        waited: Duration,
    },
    /// The lock file could not be created, opened or locked.
    #[error("cannot lock {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

impl WriterLock {
    /// Takes the lock on `path` (creating the file 0600 if missing; its directory must exist),
    /// waiting up to `wait` for its holder to release it. `Duration::ZERO` tries once.
    pub fn acquire(path: &Path, wait: Duration) -> Result<WriterLock, LockError> {
        let io_err = |source| LockError::Io { path: path.to_owned(), source };
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path).map_err(io_err)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        while !flock_nonblocking(&file).map_err(io_err)? {
            let waited = start.elapsed();
            if waited >= wait {
                return Err(LockError::Busy { path: path.to_owned(), holder: read_pid(&mut file), waited });
            }
            std::thread::sleep(pause.min(wait - waited));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        // Ours now: record who holds it, for the messages of those who wait.
        let record = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id()));
        if let Err(e) = record {
            tracing::debug!(path = %path.display(), error = %e, "cannot record the lock holder's pid");
        }
        Ok(WriterLock { file, path: path.to_owned() })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Still held here, so no one else writes the file meanwhile. Closing it releases the lock.
        let _ = self.file.set_len(0);
    }
}

/// The pid recorded in a lock file, if any.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `true` if the lock is now held, `false` if another holds it.
fn flock_nonblocking(file: &File) -> io::Result<bool> {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
}

/// Takes an exclusive `flock(2)` on an open file, waiting as long as it takes (for short critical
/// sections of other processes, such as an audit log append).
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_EX).map(drop)
}

/// Releases a lock taken with [`lock_exclusive`].
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_UN).map(drop)
}

/// `flock(2)`: see [`crate::sys::flock`].
fn flock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    crate::sys::flock(file.as_fd(), operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // The mode is the new file's: the second write created a new one.
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_file_and_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing/f");
        let e = write_atomic(&p, b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("cannot write {}: creating a temporary file", p.display())), "{msg}");
        assert!(write_atomic(Path::new("/"), b"x", 0o600).unwrap_err().to_string().contains("names no file"));
    }

    #[test]
    fn create_dir_sets_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c");
        create_dir(&p, 0o700).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b"), p.clone()] {
            assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        }
        create_dir(&p, 0o755).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700, "an existing directory is kept as it is");
    }
}
