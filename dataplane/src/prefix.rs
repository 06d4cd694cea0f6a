//! IP prefixes (`192.0.2.0/24`, `2001:db8::/32`) as used for allowed IPs, always stored with the
//! host bits cleared, so `192.95.5.65/27` reads back as `192.95.5.64/27` (as `wg` shows it).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a prefix string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("not an IP address (expected e.g. 10.0.0.0/24 or fd00::/64)")]
    Address,
    /// The length is missing, not a number, or too long for the address family.
    #[error("invalid prefix length (0..=32 for IPv4, 0..=128 for IPv6)")]
    Length,
}

/// An address and a prefix length, host bits cleared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// Builds a prefix, clearing the host bits. Fails when `len` exceeds the family's width.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return Err(PrefixError::Length),
        };
        Ok(Self { addr, len })
    }

    /// A host prefix (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, len }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is a /0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                IpPrefix::new(ip, self.len).map(|p| p.addr == self.addr).unwrap_or(false)
            }
            _ => false,
        }
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    /// Parses `addr/len`; a bare address is a host prefix.
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let (addr, len) = parse_addr_len(s)?;
        IpPrefix::new(addr, len)
    }
}

/// Splits `addr/len` into its parts, the length only syntactically checked (1 to 3 digits); a
/// bare address gets its family's full length (/32, /128). Shared by every `addr/len` type.
pub fn parse_addr_len(s: &str) -> Result<(IpAddr, u8), PrefixError> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| PrefixError::Address)?;
    let len = match l {
        None if addr.is_ipv4() => 32,
        None => 128,
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().map_err(|_| PrefixError::Length)?,
        Some(_) => return Err(PrefixError::Length),
    };
    Ok((addr, len))
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_host_bits() {
        let p: IpPrefix = "192.95.5.65/27".parse().unwrap();
        assert_eq!(p.to_string(), "192.95.5.64/27");
        let p: IpPrefix = "2001:db8::1/32".parse().unwrap();
        assert_eq!(p.to_string(), "2001:db8::/32");
        assert_eq!("0.0.0.0/0".parse::<IpPrefix>().unwrap().len(), 0);
        assert_eq!("10.1.2.3".parse::<IpPrefix>().unwrap().to_string(), "10.1.2.3/32");
    }

    #[test]
    fn refuses_junk() {
        assert_eq!("10.0.0.0/33".parse::<IpPrefix>(), Err(PrefixError::Length));
        assert_eq!("::/129".parse::<IpPrefix>(), Err(PrefixError::Length));
        assert_eq!("10.0.0.0/".parse::<IpPrefix>(), Err(PrefixError::Length));
        assert_eq!("10.0.0.0/+1".parse::<IpPrefix>(), Err(PrefixError::Length));
        assert_eq!("host/8".parse::<IpPrefix>(), Err(PrefixError::Address));
    }

    #[test]
    fn contains() {
        let p: IpPrefix = "10.0.0.0/8".parse().unwrap();
        assert!(p.contains("10.200.0.1".parse().unwrap()));
        assert!(!p.contains("11.0.0.1".parse().unwrap()));
        assert!(!p.contains("::a00:1".parse().unwrap()));
    }
}
