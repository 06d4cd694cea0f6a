//! TAI64N timestamps as WireGuard sends them in handshake initiations.
//!
//! Twelve bytes: big-endian seconds (2^62 + 10 + UNIX seconds) then big-endian nanoseconds. The
//! nanoseconds are rounded down to a multiple of 2^24 ns (about 16.8 ms) so that the timestamp does
//! not leak fine-grained timer values. Byte order makes lexicographic order equal time order.

use std::time::Duration;

/// Length of a TAI64N label.
pub const TAI64N_LEN: usize = 12;
const TAI64_EPOCH_OFFSET: u64 = (1 << 62) + 10;
const WHITENING_MASK: u32 = (1 << 24) - 1;

/// A TAI64N label; ordering is chronological.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64N(pub [u8; TAI64N_LEN]);

impl Tai64N {
    /// The smallest label: every real timestamp is greater.
    pub const ZERO: Tai64N = Tai64N([0; TAI64N_LEN]);

    /// The whitened label for a time given as a duration since the UNIX epoch.
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = TAI64_EPOCH_OFFSET.wrapping_add(since_epoch.as_secs());
        let nanos = since_epoch.subsec_nanos() & !WHITENING_MASK;
        let mut b = [0u8; TAI64N_LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Tai64N(b)
    }

    /// The time this label stands for, as a duration since the UNIX epoch (`None` before it).
    pub fn to_unix(&self) -> Option<Duration> {
        let secs = u64::from_be_bytes(self.0[..8].try_into().ok()?);
        let nanos = u32::from_be_bytes(self.0[8..].try_into().ok()?);
        Some(Duration::new(secs.checked_sub(TAI64_EPOCH_OFFSET)?, nanos.min(999_999_999)))
    }
}

impl std::fmt::Debug for Tai64N {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tai64N(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_whitens() {
        let t = Tai64N::from_unix(Duration::new(0x6553f100, 123_456_789));
        assert_eq!(&t.0[..8], &[0x40, 0, 0, 0, 0x65, 0x53, 0xf1, 0x0a]);
        let nanos = u32::from_be_bytes(t.0[8..].try_into().unwrap());
        assert_eq!(nanos % (1 << 24), 0);
        assert!(nanos <= 123_456_789 && 123_456_789 - nanos < (1 << 24));
        assert_eq!(t.to_unix().unwrap().as_secs(), 0x6553f100);
    }

    #[test]
    fn order_is_chronological() {
        let a = Tai64N::from_unix(Duration::new(100, 0));
        let b = Tai64N::from_unix(Duration::new(100, 20_000_000));
        let c = Tai64N::from_unix(Duration::new(101, 0));
        assert!(Tai64N::ZERO < a && a < b && b < c);
        // Two instants within one 2^24 ns slot give the same label.
        assert_eq!(Tai64N::from_unix(Duration::new(5, 1)), Tai64N::from_unix(Duration::new(5, 16_000_000)));
    }
}
