//! Inner-packet validation: `inner::parse` on arbitrary decrypted plaintexts.
//!
//! Invariants: never panics; an accepted packet fits in the plaintext, has a version-consistent
//! minimum length and the addresses at the header offsets; appending zero padding (what a sender
//! adds up to a multiple of 16) changes nothing.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use vpn_tunnel::inner::{self, InnerError};

fuzz_target!(|data: &[u8]| {
    let r = inner::parse(data);
    match r {
        Ok(p) => {
            assert!(p.len <= data.len());
            match (data[0] >> 4, p.source, p.destination) {
                (4, IpAddr::V4(s), IpAddr::V4(d)) => {
                    assert!(p.len >= 20 && p.len >= usize::from(data[0] & 15) * 4);
                    assert_eq!(p.len, usize::from(u16::from_be_bytes([data[2], data[3]])));
                    assert_eq!(s.octets(), data[12..16]);
                    assert_eq!(d.octets(), data[16..20]);
                }
                (6, IpAddr::V6(s), IpAddr::V6(d)) => {
                    assert_eq!(p.len, 40 + usize::from(u16::from_be_bytes([data[4], data[5]])));
                    assert_eq!(s.octets(), data[8..24]);
                    assert_eq!(d.octets(), data[24..40]);
                }
                other => panic!("accepted a packet with inconsistent version/addresses: {other:?}"),
            }
        }
        Err(InnerError::NotIp) => assert!(!matches!(data.first().map(|b| b >> 4), Some(4 | 6))),
        Err(_) => assert!(matches!(data.first().map(|b| b >> 4), Some(4 | 6))),
    }
    // Zero padding up to the next multiple of 16 (and one more block) never changes the verdict
    // on a valid packet.
    if let Ok(p) = r {
        let mut padded = data.to_vec();
        padded.resize(((data.len() + 15) & !15) + 16, 0);
        assert_eq!(inner::parse(&padded), Ok(p));
        // And the trimmed packet alone is still valid and the same.
        assert_eq!(inner::parse(&data[..p.len]), Ok(p));
    }
});
