//! Validation of decrypted inner packets: only IPv4 or IPv6 with a consistent length field may
//! leave the tunnel. The length field also tells how much of the plaintext is padding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a decrypted packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InnerError {
    /// Neither IPv4 nor IPv6.
    #[error("inner packet is not IPv4 or IPv6")]
    NotIp,
    /// The header is truncated or its length field disagrees with the plaintext.
    #[error("inner packet length is inconsistent")]
    BadLength,
}

/// The checked facts about an inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerPacket {
    /// Length without the padding.
    pub len: usize,
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
}

/// Checks a plaintext (padding included) and returns its real length and addresses.
pub fn parse(p: &[u8]) -> Result<InnerPacket, InnerError> {
    match p.first().map(|b| b >> 4) {
        Some(4) => {
            if p.len() < 20 {
                return Err(InnerError::BadLength);
            }
            let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if len < 20 || len > p.len() || ihl < 20 || ihl > len {
                return Err(InnerError::BadLength);
            }
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]));
            Ok(InnerPacket { len, source: a(12), destination: a(16) })
        }
        Some(6) => {
            if p.len() < 40 {
                return Err(InnerError::BadLength);
            }
            let len = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
            if len > p.len() {
                return Err(InnerError::BadLength);
            }
            let a = |o: usize| {
                let b: [u8; 16] = p[o..o + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(b))
            };
            Ok(InnerPacket { len, source: a(8), destination: a(24) })
        }
        _ => Err(InnerError::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(total: u16, buf_len: usize) -> Vec<u8> {
        let mut p = vec![0u8; buf_len.max(20)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p.truncate(buf_len);
        p
    }

    #[test]
    fn ipv4_lengths() {
        let ok = parse(&v4(84, 96)).unwrap();
        assert_eq!((ok.len, ok.source), (84, "10.0.0.1".parse().unwrap()));
        assert_eq!(parse(&v4(97, 96)), Err(InnerError::BadLength));
        assert_eq!(parse(&v4(19, 96)), Err(InnerError::BadLength));
        assert_eq!(parse(&v4(20, 19)), Err(InnerError::BadLength));
        let mut bad_ihl = v4(84, 96);
        bad_ihl[0] = 0x44;
        assert_eq!(parse(&bad_ihl), Err(InnerError::BadLength));
    }

    #[test]
    fn ipv6_and_junk() {
        let mut p = vec![0u8; 64];
        p[0] = 0x60;
        p[5] = 8;
        p[23] = 1;
        let ok = parse(&p).unwrap();
        assert_eq!(ok.len, 48);
        assert_eq!(ok.source, "::1".parse::<IpAddr>().unwrap());
        p[5] = 25;
        assert_eq!(parse(&p), Err(InnerError::BadLength));
        assert_eq!(parse(&[0x10; 40]), Err(InnerError::NotIp));
        assert_eq!(parse(&[]), Err(InnerError::NotIp));
    }
}
