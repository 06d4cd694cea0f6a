//! ICMP destination-unreachable answers (`vpn_dataplane::icmp`) to arbitrary packets read from
//! TUN.
//!
//! Invariants: never panics; an answer is a well-formed IP packet of the same version, within
//! 576 bytes (IPv4) or 1280 (IPv6), with valid checksums, from the packet's destination to its
//! source, quoting a prefix of the packet; an answer never gets an answer itself (no error about
//! an error); the cheap check and the build agree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpn_dataplane::icmp::{unreachable, Unreachable};
use vpn_tunnel::inner;

/// The one's-complement sum of `b` (big-endian words) added to `sum`, folded.
fn ones_sum(b: &[u8], mut sum: u64) -> u16 {
    for w in b.chunks(2) {
        sum += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let answered = unreachable(data, &mut out);
    assert_eq!(answered, Unreachable::of(data).is_some());
    if !answered {
        return;
    }
    let parsed = inner::parse(&out).expect("the answer is a well-formed IP packet");
    assert_eq!(parsed.len, out.len());
    match out[0] >> 4 {
        4 => {
            assert_eq!(data[0] >> 4, 4);
            assert!(out.len() <= 576);
            assert_eq!(ones_sum(&out[..20], 0), 0xffff, "IPv4 header checksum");
            assert_eq!(ones_sum(&out[20..], 0), 0xffff, "ICMP checksum");
            assert_eq!((out[9], out[20], out[21]), (1, 3, 1));
            assert_eq!((&out[12..16], &out[16..20]), (&data[16..20], &data[12..16]));
            assert!(data.starts_with(&out[28..]));
        }
        6 => {
            assert_eq!(data[0] >> 4, 6);
            assert!(out.len() <= 1280);
            let pseudo = u64::from(ones_sum(&out[8..40], 0)) + (out.len() as u64 - 40) + 58;
            assert_eq!(ones_sum(&out[40..], pseudo), 0xffff, "ICMPv6 checksum");
            assert_eq!((out[6], out[40], out[41]), (58, 1, 3));
            assert_eq!((&out[8..24], &out[24..40]), (&data[24..40], &data[8..24]));
            assert!(data.starts_with(&out[48..]));
        }
        v => panic!("an answer of IP version {v}"),
    }
    let mut again = Vec::new();
    assert!(!unreachable(&out, &mut again), "an answer to an answer");
});
