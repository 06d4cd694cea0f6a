//! Decapsulation: two devices complete a real handshake in-process (seeded ChaCha20 RNGs, a
//! virtual clock), then the responder B receives, in an order chosen by the input:
//! - forged data messages whose receiver index is patched to a live one (fuzzed counter and body);
//! - genuine data messages sealed by A around fuzzed inner packets, some with one byte changed or
//!   truncated;
//! - replays of genuine messages;
//! - arbitrary datagrams of any type;
//! - traffic in the other direction, and clock steps that fire timers (keepalives, rekeying,
//!   expiry), with everything the devices send delivered to each other.
//!
//! Invariants: a message that is not byte-for-byte what A sealed never authenticates, never moves
//! a replay window and makes B send nothing; a genuine message is accepted at most once; an
//! accepted packet is exactly what A sent (padding trimmed), from an allowed source; a genuine
//! message on a fresh session is accepted unless its inner packet is invalid or not allowed.

#![no_main]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vpn_fuzz::*;
use vpn_tunnel::inner;
use vpn_tunnel::wire::{padded_len, Message};
use vpn_tunnel::{DropReason, Received, DEFAULT_MTU};

/// Before this much virtual time no session can have been replaced or have expired, so a genuine
/// message must be accepted.
const STRICT: Duration = Duration::from_secs(100);

fn counter_of(msg: &[u8]) -> (u32, u64) {
    (u32::from_le_bytes(msg[4..8].try_into().unwrap()), u64::from_le_bytes(msg[8..16].try_into().unwrap()))
}

fn inner_packet(u: &mut Unstructured<'_>) -> libfuzzer_sys::arbitrary::Result<Vec<u8>> {
    let len = u.int_in_range(0..=300usize)?;
    let body = u.bytes(len.min(u.len()))?;
    Ok(match u.int_in_range(0..=3u8)? {
        0 => ipv4_packet(A_TUNNEL_IP, B_TUNNEL_IP, body),
        1 => ipv4_packet(Ipv4Addr::new(10, 9, 9, 9), B_TUNNEL_IP, body),
        2 => Vec::new(),
        _ => body.to_vec(),
    })
}

fn run(u: &mut Unstructured<'_>) -> libfuzzer_sys::arbitrary::Result<()> {
    let mut p = Pair::handshake(1);
    let mut now = p.start;
    let b_ok = p.b_allows();
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let mut accepted: HashSet<(u32, u64)> = HashSet::new();

    for _ in 0..32 {
        if u.is_empty() {
            break;
        }
        let strict = now.saturating_duration_since(p.start) < STRICT;
        match u.int_in_range(0..=5u8)? {
            // A forged data message on a live receiver index.
            0 => {
                let windows = p.b_windows();
                let Some(&(index, greatest)) = windows.get(usize::from(u.arbitrary::<u8>()?) % windows.len().max(1)) else {
                    continue;
                };
                let counter = match u.int_in_range(0..=2u8)? {
                    0 => u.arbitrary()?,
                    1 => greatest.map_or(0, |g| g + 1),
                    _ => greatest.unwrap_or(0).saturating_sub(u64::from(u.arbitrary::<u16>()?)),
                };
                let len = u.int_in_range(16..=200usize)?;
                let mut msg = vec![0u8; 16 + len];
                u.fill_buffer(&mut msg[16..])?;
                msg[..4].copy_from_slice(&4u32.to_le_bytes());
                msg[4..8].copy_from_slice(&index.to_le_bytes());
                msg[8..16].copy_from_slice(&counter.to_le_bytes());
                let drops = p.b.stats().total_drops();
                let r = p.b.handle_datagram(now, A_ADDR, &mut msg, &b_ok);
                if tracing() {
                    eprintln!("trace: forged -> {r:?}");
                }
                assert!(r.is_err(), "a forged data message was accepted: {r:?}");
                assert_eq!(p.b_windows(), windows, "a forged message moved a replay window");
                assert!(p.b.poll_transmit().is_none(), "B answered a forged message");
                assert_eq!(p.b.stats().total_drops(), drops + 1);
            }
            // A genuine data message from A, maybe tampered with.
            1 => {
                let pkt = inner_packet(u)?;
                p.a.send(now, p.b_at_a, &pkt).expect("peer exists");
                let out = drain(&mut p.a);
                if strict {
                    assert_eq!(out.len(), 1, "A did not seal at once on a fresh session");
                }
                let tamper = match u.int_in_range(0..=3u8)? {
                    0 => Some((u.arbitrary::<u16>()?, u.int_in_range(1..=255u8)?)),
                    1 => Some((u.arbitrary::<u16>()?, 0)),
                    _ => None,
                };
                for t in out {
                    let Ok(Message::Data(_)) = Message::parse(&t.payload) else {
                        // A handshake started by A (rekeying): deliver it as is.
                        let mut m = t.payload;
                        let _ = p.b.handle_datagram(now, A_ADDR, &mut m, &b_ok);
                        continue;
                    };
                    if captured.len() < 64 {
                        captured.push(t.payload.clone());
                    }
                    let mut msg = t.payload.clone();
                    if let Some((pos, x)) = tamper {
                        // Let earlier traffic settle so that B's queue is empty.
                        p.pump(now);
                        if x == 0 {
                            msg.truncate(usize::from(pos) % msg.len());
                        } else {
                            let i = usize::from(pos) % msg.len();
                            msg[i] ^= x;
                        }
                        let windows = p.b_windows();
                        let r = p.b.handle_datagram(now, A_ADDR, &mut msg, &b_ok);
                        if tracing() {
                            eprintln!("trace: tampered -> {r:?}");
                        }
                        assert!(r.is_err(), "a tampered data message was accepted: {r:?}");
                        assert_eq!(p.b_windows(), windows, "a tampered message moved a replay window");
                        assert!(p.b.poll_transmit().is_none(), "B answered a tampered message");
                        continue;
                    }
                    let key = counter_of(&msg);
                    let r = p.b.handle_datagram(now, A_ADDR, &mut msg, &b_ok);
                    if tracing() {
                        eprintln!("trace: genuine -> {r:?}");
                    }
                    let mut padded = pkt.clone();
                    padded.resize(padded_len(pkt.len(), DEFAULT_MTU), 0);
                    let expected = inner::parse(&padded);
                    match &r {
                        Ok(Received::Packet { peer, range }) => {
                            assert_eq!(*peer, p.a_at_b);
                            let e = expected.expect("accepted an invalid inner packet");
                            assert_eq!(e.len, range.len());
                            assert_eq!(e.source, std::net::IpAddr::V4(A_TUNNEL_IP));
                            assert_eq!(&msg[range.clone()], &padded[..range.len()], "decrypted packet differs");
                        }
                        Ok(Received::Keepalive(peer)) => assert!(*peer == p.a_at_b && pkt.is_empty()),
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(DropReason::InvalidInnerPacket) => assert!(expected.is_err()),
                        Err(DropReason::DisallowedSource) => assert!(expected.is_ok_and(|e| e.source != std::net::IpAddr::V4(A_TUNNEL_IP))),
                        Err(e) => assert!(!strict, "genuine message refused on a fresh session: {e:?}"),
                    }
                    if matches!(r, Ok(_) | Err(DropReason::InvalidInnerPacket | DropReason::DisallowedSource)) {
                        assert!(accepted.insert(key), "counter {key:?} accepted twice");
                    }
                }
                p.pump(now);
            }
            // A replay of a genuine message.
            2 => {
                if captured.is_empty() {
                    continue;
                }
                let mut msg = captured[usize::from(u.arbitrary::<u8>()?) % captured.len()].clone();
                let key = counter_of(&msg);
                let r = p.b.handle_datagram(now, A_ADDR, &mut msg, &b_ok);
                if tracing() {
                    eprintln!("trace: replay (accepted before: {}) -> {r:?}", accepted.contains(&key));
                }
                if accepted.contains(&key) {
                    assert!(
                        matches!(r, Err(DropReason::ReplayedCounter | DropReason::SessionExpired | DropReason::UnknownIndex)),
                        "replayed counter {key:?}: {r:?}"
                    );
                } else if matches!(r, Ok(_) | Err(DropReason::InvalidInnerPacket | DropReason::DisallowedSource)) {
                    accepted.insert(key);
                }
                p.pump(now);
            }
            // Arbitrary bytes, any type; a data message gets a live receiver index.
            3 => {
                let len = u.int_in_range(0..=200usize)?;
                let mut msg = u.bytes(len.min(u.len()))?.to_vec();
                if msg.len() >= 8 && msg[0] == 4 && u.arbitrary::<bool>()? {
                    if let Some(index) = p.live_index_at_b() {
                        msg[4..8].copy_from_slice(&index.to_le_bytes());
                    }
                }
                let windows = p.b_windows();
                let r = p.b.handle_datagram(now, A_ADDR, &mut msg, &b_ok);
                if tracing() {
                    eprintln!("trace: arbitrary -> {r:?}");
                }
                assert!(r.is_err(), "arbitrary bytes accepted: {r:?}");
                assert_eq!(p.b_windows(), windows);
                assert!(p.b.poll_transmit().is_none(), "B answered arbitrary bytes");
            }
            // Traffic from B to A.
            4 => {
                let pkt = inner_packet(u)?;
                p.b.send(now, p.a_at_b, &pkt).expect("peer exists");
                p.pump(now);
            }
            // Time passes; timers fire; the devices talk.
            _ => {
                now += time_step(u.arbitrary()?);
                p.a.handle_timeout(now);
                p.b.handle_timeout(now);
                p.pump(now);
                if tracing() {
                    eprintln!("trace: time {:?}, B windows {:?}", now.saturating_duration_since(p.start), p.b_windows());
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
