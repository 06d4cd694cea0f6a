//! TUN write coalescing: `gro::Coalescer::plan` on batches built from arbitrary bytes, mixing
//! raw packets with TCP and UDP segments of a few flows whose sequence numbers, lengths, flags
//! and header fields the input chooses (so that coalescing paths are reached).
//!
//! Invariants: never panics; every packet is in exactly one write, in at most 64-packet writes;
//! a write of one packet carries a zero virtio-net header and the packet unchanged; a coalesced
//! write fits the IP length limit and carries the first packet whole plus the payloads of the
//! others.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpn_dataplane::gro::{Coalescer, MAX_SEGMENTS, VNET_HDR_LEN};

/// A TCP or UDP packet between 10.0.0.1 and 10.0.0.2 (or fd00::1 and fd00::2) described by 8
/// input bytes.
fn segment(d: &[u8], seq: &mut [u32; 4]) -> Vec<u8> {
    let (flow, len, flags, tweak, v6) = (usize::from(d[0] & 3), usize::from(d[1]) * 8, d[2], d[3], d[0] & 0x80 != 0);
    let udp = d[0] & 0x40 != 0;
    let l4 = if v6 { 40 } else { 20 };
    let th = if udp { 8 } else { 20 + usize::from(tweak & 1) * 12 };
    let total = l4 + th + len;
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = if udp { 17 } else { 6 };
        p[7] = 64 - (tweak >> 7);
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = if tweak & 2 != 0 { 0x20 } else { 0x40 };
        p[8] = 64 - (tweak >> 7);
        p[9] = if udp { 17 } else { 6 };
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    }
    p[l4..l4 + 2].copy_from_slice(&(40000 + flow as u16).to_be_bytes());
    p[l4 + 2..l4 + 4].copy_from_slice(&5201u16.to_be_bytes());
    if udp {
        p[l4 + 4..l4 + 6].copy_from_slice(&((th + len) as u16).to_be_bytes());
        p[l4 + 6] = d[4] | 1;
    } else {
        let s = if tweak & 4 != 0 { seq[flow].wrapping_sub(u32::from(d[4])) } else { seq[flow] };
        p[l4 + 4..l4 + 8].copy_from_slice(&s.to_be_bytes());
        seq[flow] = s.wrapping_add(len as u32);
        p[l4 + 8..l4 + 12].copy_from_slice(&u32::from(tweak >> 5).to_be_bytes());
        p[l4 + 12] = ((th / 4) as u8) << 4;
        p[l4 + 13] = flags;
        p[l4 + 14] = d[5] & 1;
    }
    for (i, b) in p[l4 + th..].iter_mut().enumerate() {
        *b = d[6] ^ i as u8;
    }
    p
}

fn packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut seq = [0u32; 4];
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        if op < 200 {
            let Some(d) = tail.get(..8) else { break };
            out.push(segment(d, &mut seq));
            rest = &tail[8..];
        } else {
            let n = usize::from(op - 200).min(tail.len());
            out.push(tail[..n].to_vec());
            rest = &tail[n..];
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let original = packets(data);
    for udp in [false, true] {
        let mut owned = original.clone();
        let mut views: Vec<&mut [u8]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
        let mut c = Coalescer::new(udp);
        c.plan(&mut views);
        let mut seen = 0;
        for w in c.writes() {
            let pieces: Vec<&[u8]> = w.pieces(&views).collect();
            assert_eq!(pieces.len(), w.count());
            assert!((1..=MAX_SEGMENTS).contains(&w.count()));
            let header = w.header();
            if w.count() == 1 {
                assert_eq!(header, [0u8; VNET_HDR_LEN]);
                assert!(original.iter().any(|p| p.as_slice() == pieces[0]), "a lone packet is written unchanged");
            } else {
                assert_ne!(header, [0u8; VNET_HDR_LEN]);
                let total: usize = pieces.iter().map(|p| p.len()).sum();
                assert!(total <= 65_535 + 40);
                let gso_size = usize::from(u16::from_ne_bytes([header[4], header[5]]));
                assert!(pieces[1..].iter().all(|p| !p.is_empty() && p.len() <= gso_size));
            }
            seen += w.count();
        }
        assert_eq!(seen, original.len(), "every packet is written once");
    }
});
