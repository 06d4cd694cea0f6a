//! The crate's only `unsafe` code, for two system calls `std` does not offer: `poll(2)`, so that
//! the UAPI accept loop can wait for a connection and for its shutdown signal at the same time,
//! and `flock(2)`, for the writers' lock and the audit log (see `crate::durable`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Waits until one of `fds` is readable (or has hung up), at most `timeout_ms` (-1: no limit).
/// Returns which ones are ready; all `false` on timeout.
pub(crate) fn poll_readable<const N: usize>(fds: [BorrowedFd<'_>; N], timeout_ms: i32) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    // SAFETY: `pfds` is a valid, initialised array of exactly `N` pollfd entries that lives for the
    // whole call; the descriptors are borrowed, so they stay open meanwhile. poll only writes the
    // `revents` fields of those entries.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pfds.map(|p| p.revents != 0))
}

/// `flock(2)`, retried when interrupted: `Ok(false)` if `LOCK_NB` was given and another holds
/// the lock.
pub(crate) fn flock(fd: BorrowedFd<'_>, operation: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock(2) takes a descriptor and flags and touches no memory of ours; the
        // descriptor is borrowed, so it stays open for the whole call.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}
