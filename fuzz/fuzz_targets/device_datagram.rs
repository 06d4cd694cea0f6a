//! Arbitrary datagrams of any type into `Device::handle_datagram`.
//!
//! The first input byte chooses the setup: a lone responder with one known peer, or the responder
//! of a pair that completed a handshake (so live receiver indices, a pending cookie state and
//! sessions exist); whether it is under load; and whether handshake-typed datagrams get a valid
//! mac1 computed by the target. The rest is a sequence of datagrams, each preceded by a source
//! selector, a clock step and a shape: raw bytes of any length, or a message-like datagram (a valid
//! type and length, fuzzed content).
//!
//! Invariants: never panics; a datagram that is not a WireGuard message is `Malformed`; nothing is
//! ever sent in reply to a datagram without a valid mac1 (`poll_transmit()` stays `None`); the only
//! possible reply to fuzzed bytes is one cookie reply under load, to the source; a refusal is
//! counted exactly once; fuzzed bytes never authenticate.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vpn_crypto::PrivateKey;
use vpn_fuzz::*;
use vpn_tunnel::wire::Message;
use vpn_tunnel::{Device, DropReason, PeerConfig, Received};

fn source(sel: u8) -> SocketAddr {
    match sel % 3 {
        0 => A_ADDR,
        1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), u16::from(sel)),
        _ => SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, u16::from(sel))), 443),
    }
}

fn run(u: &mut Unstructured<'_>) -> libfuzzer_sys::arbitrary::Result<()> {
    let mode: u8 = u.arbitrary()?;
    let start = origin();
    let (mut dev, live_index) = if mode & 1 == 0 {
        let mut d = Device::new(Some(PrivateKey::from_bytes(RESPONDER_PRIVATE)), rng(3), start, UNIX_ORIGIN);
        d.add_peer(PeerConfig::new(initiator_public())).expect("add peer");
        (d, None)
    } else {
        let p = Pair::handshake(u64::from(mode));
        let live = p.live_index_at_b();
        (p.b, live)
    };
    let loaded = mode & 2 != 0;
    if loaded {
        dev.set_handshake_backlog(usize::from(mode >> 4) * 64, 1024);
    }
    let fix_mac1 = mode & 4 != 0;
    let responder_pk = responder_public();
    let mut now = start;

    while !u.is_empty() {
        let sel: u8 = u.arbitrary()?;
        now += time_step(sel >> 4);
        let src = source(sel);
        let shape: u8 = u.arbitrary()?;
        let mut msg = if shape & 3 == 0 {
            // Raw bytes of any length up to 355.
            let len = usize::from(u.arbitrary::<u8>()?) + if sel & 8 != 0 { 100 } else { 0 };
            u.bytes(len.min(u.len()))?.to_vec()
        } else {
            // Shaped like a message: a type in 1..=4 with zero reserved bytes and a valid length.
            let ty = 1 + (shape >> 2) % 4;
            let len = match ty {
                1 => 148,
                2 => 92,
                3 => 64,
                _ => 32 + usize::from(shape >> 4) * 16 + usize::from(sel & 15),
            };
            let mut m = vec![0u8; len];
            u.fill_buffer(&mut m)?;
            m[..4].copy_from_slice(&u32::from(ty).to_le_bytes());
            m
        };
        let parsed_type = Message::parse(&msg).ok().map(|_| msg[0]);
        if fix_mac1 && matches!(parsed_type, Some(1 | 2)) {
            set_mac1(&responder_pk, &mut msg);
        }
        if parsed_type == Some(4) && sel & 4 != 0 {
            if let Some(i) = live_index {
                msg[4..8].copy_from_slice(&i.to_le_bytes());
            }
        }
        let original = msg.clone();
        let drops = dev.stats().total_drops();
        let r = dev.handle_datagram(now, src, &mut msg, &|_, _| true);
        let out = drain(&mut dev);
        if tracing() {
            eprintln!("trace: pair {} loaded {loaded} type {parsed_type:?} -> {r:?}", mode & 1);
        }

        match Message::parse(&original) {
            Err(_) => assert_eq!(r, Err(DropReason::Malformed)),
            Ok(Message::Initiation(_) | Message::Response(_)) if !has_valid_mac1(&responder_pk, &original) => {
                assert_eq!(r, Err(DropReason::InvalidMac1));
            }
            Ok(_) => {}
        }
        match r {
            Ok(Received::CookieSent) => {
                assert!(has_valid_mac1(&responder_pk, &original), "cookie reply to an invalid mac1");
                assert_eq!(out.len(), 1);
                assert_eq!((out[0].peer, out[0].destination), (None, src));
                assert!(matches!(Message::parse(&out[0].payload), Ok(Message::CookieReply(_))));
            }
            Ok(other) => panic!("fuzzed bytes were accepted as {other:?}"),
            Err(reason) => {
                assert!(out.is_empty(), "sent {out:?} in reply to a refused datagram ({reason:?})");
                assert_eq!(dev.stats().total_drops(), drops + 1, "refusal not counted once");
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
