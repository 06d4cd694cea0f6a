//! An address configured on an interface together with the prefix length of its subnet, such as
//! the server's `10.8.0.1/24`. Unlike [`IpPrefix`], the host bits are kept.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use vpn_dataplane::{IpPrefix, PrefixError};

/// An interface address with its subnet's prefix length (`10.8.0.1/24`, `fd00::1/64`): assigning
/// it also routes the subnet to the interface.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceAddress {
    addr: IpAddr,
    prefix_len: u8,
}

impl InterfaceAddress {
    /// Pairs an address with a prefix length; fails when the length exceeds the family's width.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, PrefixError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(PrefixError::Length);
        }
        Ok(Self { addr, prefix_len })
    }

    /// The address itself.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The subnet's prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The subnet (`10.8.0.1/24` → `10.8.0.0/24`).
    pub fn network(&self) -> IpPrefix {
        // The length was checked in `new`, so this cannot fail.
        IpPrefix::new(self.addr, self.prefix_len).unwrap_or_else(|_| IpPrefix::host(self.addr))
    }
}

impl FromStr for InterfaceAddress {
    type Err = PrefixError;

    /// Parses `addr/len`; a bare address gets a host length (/32, /128).
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let (addr, len) = vpn_dataplane::prefix::parse_addr_len(s)?;
        Self::new(addr, len)
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_host_bits() {
        let a: InterfaceAddress = "10.8.0.1/24".parse().unwrap();
        assert_eq!(a.to_string(), "10.8.0.1/24");
        assert_eq!(a.network().to_string(), "10.8.0.0/24");
        assert_eq!("fd00::1".parse::<InterfaceAddress>().unwrap().to_string(), "fd00::1/128");
        assert_eq!("10.0.0.1/33".parse::<InterfaceAddress>(), Err(PrefixError::Length));
        assert_eq!("10.0.0.1/".parse::<InterfaceAddress>(), Err(PrefixError::Length));
        assert_eq!("x/8".parse::<InterfaceAddress>(), Err(PrefixError::Address));
    }
}
