//! The responder: a device with a fixed private key and one known peer receives 148-byte
//! initiations built from the input.
//!
//! Each step picks one of:
//! - arbitrary bytes typed as an initiation, with a mac1 the target computes with the responder's
//!   mac1 key (so the input reaches the Noise decryption), or with the fuzzed mac1 left as is;
//! - a genuine initiation from the known peer (fuzzed ephemeral key, sender index, timestamp),
//!   optionally with one byte changed and mac1 recomputed;
//! - a 92-byte response with a valid mac1 (no handshake is pending on the responder);
//!
//! and a source address, a clock step and the handshake backlog, so that under load the device
//! builds cookie replies, which the target feeds back to the initiator's cookie state; later
//! genuine initiations then carry a valid mac2 and reach the per-source rate limiter.
//!
//! Invariants: nothing is sent in reply to a message without a valid mac1; a consumed initiation
//! gets exactly one well-formed response to its source, which the initiator can consume; a cookie
//! reply only under load, addressed to the message's sender index; a refusal sends nothing and is
//! counted; the datagram buffer of a handshake message is not modified.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vpn_crypto::{PresharedKey, PrivateKey, Tai64N};
use vpn_fuzz::*;
use vpn_tunnel::constants::UNDER_LOAD_AFTER_TIME;
use vpn_tunnel::macs::CookieState;
use vpn_tunnel::noise::{consume_response, create_initiation, PeerKeys, StaticIdentity};
use vpn_tunnel::wire::Message;
use vpn_tunnel::{Device, DropReason, PeerConfig, Received};

fn source(sel: u8) -> SocketAddr {
    match sel % 4 {
        0 => A_ADDR,
        1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000),
        2 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 51820),
        _ => SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), 51820),
    }
}

fn run(u: &mut Unstructured<'_>) -> libfuzzer_sys::arbitrary::Result<()> {
    let responder_pk = responder_public();
    let start = origin();
    let mut now = start;
    let mut dev = Device::new(Some(PrivateKey::from_bytes(RESPONDER_PRIVATE)), rng(7), start, UNIX_ORIGIN);
    let peer = dev.add_peer(PeerConfig::new(initiator_public())).expect("add peer");

    // The known peer's side, to build genuine initiations and take cookie replies.
    let i_id = StaticIdentity::new(PrivateKey::from_bytes(INITIATOR_PRIVATE));
    let i_keys = PeerKeys::new(Some(&i_id), responder_pk, PresharedKey::default());
    let mut cookie = CookieState::default();

    let mut last_loaded: Option<Instant> = None;
    let mut refusals = 0u64;

    for _ in 0..24 {
        if u.is_empty() {
            break;
        }
        let ctl: u8 = u.arbitrary()?;
        now += time_step(u.arbitrary()?);
        let src = source(ctl >> 5);
        let loaded = ctl & 1 != 0;
        if loaded {
            dev.set_handshake_backlog(1024, 1024);
            last_loaded = Some(now);
        } else {
            dev.set_handshake_backlog(0, 1024);
        }

        let mut genuine = None;
        let mut untouched = false;
        let mut msg = vec![0u8; 148];
        match (ctl >> 1) & 7 {
            // Arbitrary bytes, valid mac1.
            0 | 1 => {
                u.fill_buffer(&mut msg)?;
                msg[..4].copy_from_slice(&1u32.to_le_bytes());
                set_mac1(&responder_pk, &mut msg);
            }
            // Arbitrary bytes, mac1 as fuzzed.
            2 => {
                u.fill_buffer(&mut msg)?;
                msg[..4].copy_from_slice(&1u32.to_le_bytes());
            }
            // A genuine initiation, maybe with one byte changed (mac1 recomputed).
            3..=6 => {
                let eph: [u8; 32] = u.arbitrary()?;
                let index: u32 = u.arbitrary()?;
                let ts = if ctl & 0x10 != 0 { Tai64N(u.arbitrary()?) } else { dev.timestamp(now) };
                let mut out = [0u8; 148];
                let state = create_initiation(&i_id, &i_keys, index, PrivateKey::from_bytes(eph), ts, &mut out).expect("initiation");
                cookie.add_macs(now, &i_keys.mac1_key, &mut out);
                msg.copy_from_slice(&out);
                let (pos, x): (u8, u8) = (u.arbitrary()?, u.arbitrary()?);
                if ctl & 0x80 != 0 && x != 0 {
                    msg[4 + usize::from(pos) % 112] ^= x;
                    set_mac1(&responder_pk, &mut msg);
                } else {
                    untouched = true;
                }
                genuine = Some(state);
            }
            // A response with a valid mac1: the responder has no handshake pending.
            _ => {
                msg.truncate(92);
                u.fill_buffer(&mut msg)?;
                msg[..4].copy_from_slice(&2u32.to_le_bytes());
                if ctl & 0x80 != 0 {
                    set_mac1(&responder_pk, &mut msg);
                }
            }
        }

        let mac1_ok = has_valid_mac1(&responder_pk, &msg);
        let sender = u32::from_le_bytes(msg[4..8].try_into().unwrap());
        let mut buf = msg.clone();
        let drops_before = dev.stats().total_drops();
        let r = dev.handle_datagram(now, src, &mut buf, &|_, _| true);
        let out = drain(&mut dev);
        assert_eq!(buf, msg, "a handshake message was modified in place");
        if tracing() {
            eprintln!("trace: kind {} loaded {loaded} mac1 {mac1_ok} genuine {} -> {r:?}", (ctl >> 1) & 7, genuine.is_some());
        }

        if !mac1_ok {
            assert_eq!(r, Err(DropReason::InvalidMac1));
            assert!(out.is_empty(), "sent {out:?} in reply to an invalid mac1");
        }
        match r {
            Ok(Received::Initiation(id)) => {
                assert_eq!(id, peer);
                assert_eq!(msg.len(), 148);
                assert_eq!(out.len(), 1, "one response per consumed initiation");
                let t = &out[0];
                assert_eq!((t.peer, t.destination), (Some(peer), src));
                let Ok(Message::Response(resp)) = Message::parse(&t.payload) else { panic!("not a response: {:?}", t.payload) };
                assert_eq!(resp.receiver(), sender);
                assert!(has_valid_mac1(&initiator_public(), &t.payload));
                let state = genuine.as_ref().expect("accepted an initiation nobody could have made");
                // The initiator completes the handshake (the index is checked by the device, not here).
                assert!(consume_response(&i_id, &i_keys, state, &resp).is_ok(), "initiator cannot consume the response");
            }
            Ok(Received::CookieSent) => {
                let under_load = last_loaded.is_some_and(|t| now.saturating_duration_since(t) < UNDER_LOAD_AFTER_TIME);
                assert!(under_load, "cookie reply while not under load");
                assert_eq!(out.len(), 1);
                let t = &out[0];
                assert_eq!((t.peer, t.destination), (None, src));
                let Ok(Message::CookieReply(reply)) = Message::parse(&t.payload) else { panic!("not a cookie reply") };
                assert_eq!(reply.receiver(), sender);
                if genuine.is_some() && untouched {
                    // Answers the initiator's last message: it takes the cookie.
                    cookie.consume_reply(now, &i_keys.cookie_key, &reply).expect("initiator refused a genuine cookie reply");
                    if tracing() {
                        eprintln!("trace: cookie taken");
                    }
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(reason) => {
                assert!(out.is_empty(), "sent {out:?} although the message was refused ({reason:?})");
                refusals += 1;
                assert_eq!(dev.stats().total_drops(), drops_before + 1, "refusal not counted");
            }
        }
    }
    assert_eq!(dev.stats().total_drops(), refusals);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
