//! The WireGuard handshake known-answer vector (from the project's shared vectors: generated with a
//! Noise engine that reproduces the cacophony vectors, cross-checked against wireguard-go), replayed
//! byte for byte through our initiator and responder.

use vpn_crypto::{PresharedKey, PrivateKey, PublicKey, Tai64N};
use vpn_tunnel::macs::{CookieChecker, CookieState};
use vpn_tunnel::noise::{begin_consume_initiation, consume_response, create_initiation, create_response, PeerKeys, StaticIdentity};
use vpn_tunnel::session::Session;
use vpn_tunnel::wire::Message;

const INITIATOR_PRIVATE: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const INITIATOR_PUBLIC: &str = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
const RESPONDER_PRIVATE: &str = "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40";
const RESPONDER_PUBLIC: &str = "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b";
const INITIATOR_EPHEMERAL: &str = "4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60";
const RESPONDER_EPHEMERAL: &str = "6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80";
const PSK: &str = "8182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0";
const TAI64N: &str = "400000006553f10a00000000";
const INITIATOR_INDEX: u32 = 0x1122_3344;
const RESPONDER_INDEX: u32 = 0x5566_7788;
const INITIATION: &str = "010000004433221164b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466158a0e4ca242d151ca97ab90159a98b67e616625e68b4065d357376b6598e644ad7d678c0295d22de4cb43d5135581ed36346bfa7cf42a122139f8939935ec574414e91f3b457e447709b4db0277480586ab0a99b2d78cf74bf0acad00000000000000000000000000000000";
const RESPONSE: &str = "020000008877665544332211244fe3b963e899dd295baffce248d3530f3a9a7479ba063002680ebfe7adad499b0e14cc4fa68f26cc4f920db2f1800e283c9e5564ca84fe1ccf8c5af96acab800000000000000000000000000000000";
const INITIATOR_SEND_KEY: &str = "248a29611829aaf7ee8bc8e87df805c1019f08f82d80eb79b7625821ba0a1317";
const INITIATOR_RECV_KEY: &str = "848308e622b3e15e5ebc5312111efc31082e86c85e9ee93fe8c5aa7f972cc9c3";
const FIRST_KEEPALIVE: &str = "04000000887766550000000000000000c7401bed732b18f3c0e395fc3f7435fa";
const MAC1_KEY_RESPONDER: &str = "5c5cbbfd0c782a2539047315dc2b629f825570bc6a8686d245dd060463b85e1b";
const COOKIE_KEY_RESPONDER: &str = "17728e626505a9a7054fda9a980a5209fb72714de5d9e476848ec7214cc83713";

fn k(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[test]
fn handshake_vector_byte_for_byte() {
    let now = now();
    let i_id = StaticIdentity::new(PrivateKey::from_bytes(k(INITIATOR_PRIVATE)));
    let r_id = StaticIdentity::new(PrivateKey::from_bytes(k(RESPONDER_PRIVATE)));
    assert_eq!(i_id.public_key(), &PublicKey(k(INITIATOR_PUBLIC)));
    assert_eq!(r_id.public_key(), &PublicKey(k(RESPONDER_PUBLIC)));
    assert_eq!(r_id.mac1_key, k(MAC1_KEY_RESPONDER));
    assert_eq!(r_id.cookie_key, k(COOKIE_KEY_RESPONDER));

    let psk = PresharedKey::from_bytes(k(PSK));
    let i_peer = PeerKeys::new(Some(&i_id), *r_id.public_key(), psk.clone());
    let r_peer = PeerKeys::new(Some(&r_id), *i_id.public_key(), psk);
    let ts = Tai64N(hex::decode(TAI64N).unwrap().try_into().unwrap());

    // Initiator.
    let mut init = [0u8; 148];
    let state = create_initiation(&i_id, &i_peer, INITIATOR_INDEX, PrivateKey::from_bytes(k(INITIATOR_EPHEMERAL)), ts, &mut init).unwrap();
    CookieState::default().add_macs(now, &i_peer.mac1_key, &mut init);
    assert_eq!(hex::encode(init), INITIATION);

    // Responder consumes it.
    let checker = CookieChecker::new(r_id.mac1_key, r_id.cookie_key);
    let Ok(Message::Initiation(m)) = Message::parse(&init) else { panic!("not an initiation") };
    assert!(checker.check_mac1(m.mac1_input(), m.mac1()));
    let stage1 = begin_consume_initiation(&r_id, &m).unwrap();
    assert_eq!(stage1.remote_static, *i_id.public_key());
    let consumed = stage1.finish(&r_peer).unwrap();
    assert_eq!(consumed.timestamp, ts);
    assert_eq!(consumed.remote_index, INITIATOR_INDEX);

    let mut resp = [0u8; 92];
    let r_keys = create_response(&r_peer, &consumed, RESPONDER_INDEX, PrivateKey::from_bytes(k(RESPONDER_EPHEMERAL)), &mut resp).unwrap();
    CookieState::default().add_macs(now, &r_peer.mac1_key, &mut resp);
    assert_eq!(hex::encode(resp), RESPONSE);
    assert_eq!(*r_keys.send, k(INITIATOR_RECV_KEY));
    assert_eq!(*r_keys.recv, k(INITIATOR_SEND_KEY));

    // Initiator consumes the response.
    let Ok(Message::Response(m)) = Message::parse(&resp) else { panic!("not a response") };
    let i_checker = CookieChecker::new(i_id.mac1_key, i_id.cookie_key);
    assert!(i_checker.check_mac1(m.mac1_input(), m.mac1()));
    let i_keys = consume_response(&i_id, &i_peer, &state, &m).unwrap();
    assert_eq!(*i_keys.send, k(INITIATOR_SEND_KEY));
    assert_eq!(*i_keys.recv, k(INITIATOR_RECV_KEY));
    assert_eq!((i_keys.local_index, i_keys.remote_index), (INITIATOR_INDEX, RESPONDER_INDEX));

    // First keepalive, initiator to responder.
    let i_session = Session::new(i_keys, now);
    let mut buf = [0u8; 32];
    assert_eq!(i_session.seal(now, &mut buf, 0, 1420).unwrap(), 32);
    assert_eq!(hex::encode(buf), FIRST_KEEPALIVE);
    let r_session = Session::new(r_keys, now);
    assert_eq!(r_session.open(now, &mut buf), Ok(0));
}

#[test]
fn tampered_static_is_refused() {
    let r_id = StaticIdentity::new(PrivateKey::from_bytes(k(RESPONDER_PRIVATE)));
    let mut init: Vec<u8> = hex::decode(INITIATION).unwrap();
    init[50] ^= 1;
    let Ok(Message::Initiation(m)) = Message::parse(&init) else { panic!("not an initiation") };
    assert!(begin_consume_initiation(&r_id, &m).is_err());
}
