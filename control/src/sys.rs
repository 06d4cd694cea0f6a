//! The crate's only `unsafe` code: `poll(2)`, which `std` does not offer, so that the UAPI accept
//! loop can wait for a connection and for its shutdown signal at the same time.
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
