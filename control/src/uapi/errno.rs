//! [`Errno`]: the error numbers a UAPI reply carries, negated on the wire (`errno=-22`).

use std::fmt;
use std::io;

/// A positive `errno` value as the UAPI reports it (`errno=-N` on the wire).
///
/// The values are the host's (`libc`), as wireguard-go uses `golang.org/x/sys/unix`; `wg` turns
/// them back into messages with `strerror`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// `EIO`: the request could not be read (a line or request over the limits, a truncated request).
    pub const EIO: Errno = Errno(libc::EIO);
    /// `EINVAL`: an unknown key or an invalid value.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// `EPROTO`: a line without `=`.
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    /// `EADDRINUSE`: the listen port or fwmark could not be applied to the UDP sockets.
    pub const EADDRINUSE: Errno = Errno(libc::EADDRINUSE);
    /// `ENOMEM`: the engine ran out of memory or of some bounded resource.
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);

    /// Wraps a positive errno value; `None` for zero or a negative value (those are not errors).
    pub const fn new(code: i32) -> Option<Errno> {
        if code > 0 {
            Some(Errno(code))
        } else {
            None
        }
    }

    /// The positive errno value.
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The value written after `errno=` (negative).
    pub const fn wire_value(self) -> i64 {
        -(self.0 as i64)
    }

    /// The errno of an I/O error, `EIO` when it has none.
    pub fn from_io(err: &io::Error) -> Errno {
        err.raw_os_error().and_then(Errno::new).unwrap_or(Errno::EIO)
    }

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EIO => "EIO",
            libc::EINVAL => "EINVAL",
            libc::EPROTO => "EPROTO",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EPERM => "EPERM",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for Errno {}

impl From<&io::Error> for Errno {
    fn from(err: &io::Error) -> Self {
        Errno::from_io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_linux_and_wireguard_go() {
        assert_eq!(Errno::EINVAL.wire_value(), -22);
        assert_eq!(Errno::EPROTO.wire_value(), -71);
        assert_eq!(Errno::EIO.wire_value(), -5);
        assert_eq!(Errno::EADDRINUSE.wire_value(), -98);
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(-3), None);
        assert_eq!(Errno::from_io(&io::Error::from_raw_os_error(libc::EADDRINUSE)), Errno::EADDRINUSE);
        assert_eq!(Errno::from_io(&io::Error::other("x")), Errno::EIO);
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL (22)");
    }
}
