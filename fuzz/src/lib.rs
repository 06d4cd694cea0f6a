//! Shared fixtures of the fuzz targets: fixed keys, a deterministic RNG, a virtual clock, mac1
//! computation, and a pair of devices that completed a real handshake in-process.
//!
//! Everything is deterministic for a given input: the RNGs are seeded ChaCha20 generators and
//! time is one base `Instant` (taken once per process) plus offsets chosen by the input.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vpn_crypto::blake2s::mac;
use vpn_crypto::{PrivateKey, PublicKey};
use vpn_tunnel::constants::LABEL_MAC1;
use vpn_tunnel::noise::labelled_key;
use vpn_tunnel::wire::Message;
use vpn_tunnel::{Device, PeerConfig, PeerId, Received, Transmit};

/// The responder's (device B's) static private key.
pub const RESPONDER_PRIVATE: [u8; 32] = [0x21; 32];
/// The initiator's (device A's) static private key.
pub const INITIATOR_PRIVATE: [u8; 32] = [0x42; 32];
/// Wall-clock time of the virtual clock's origin (November 2023).
pub const UNIX_ORIGIN: Duration = Duration::from_secs(1_700_000_000);
/// A's UDP address.
pub const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
/// B's UDP address.
pub const B_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 51821);
/// A's tunnel address: the only inner source B accepts from A.
pub const A_TUNNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// B's tunnel address.
pub const B_TUNNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// The origin of the virtual clock: one real instant per process (an `Instant` cannot be built
/// any other way); every other instant is this plus an offset chosen by the input.
#[allow(clippy::disallowed_methods)]
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Whether `VPN_FUZZ_TRACE` is set in the environment: the stateful targets then print the
/// outcome of every step on stderr, which shows how deep a corpus reaches when replayed with
/// `-runs=0`.
pub fn tracing() -> bool {
    static TRACING: OnceLock<bool> = OnceLock::new();
    *TRACING.get_or_init(|| std::env::var_os("VPN_FUZZ_TRACE").is_some())
}

/// A seeded, cryptographically strong RNG (deterministic for the fuzzer).
pub fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

/// The responder's public key.
pub fn responder_public() -> PublicKey {
    PrivateKey::from_bytes(RESPONDER_PRIVATE).public_key()
}

/// The initiator's public key.
pub fn initiator_public() -> PublicKey {
    PrivateKey::from_bytes(INITIATOR_PRIVATE).public_key()
}

/// mac1 of a handshake message sent to the owner of `receiver`: keyed BLAKE2s-128 under
/// HASH("mac1----" || receiver) over everything before the mac1 field.
pub fn mac1(receiver: &PublicKey, covered: &[u8]) -> [u8; 16] {
    mac(&labelled_key(LABEL_MAC1, receiver), &[covered])
}

/// Writes a valid mac1 into a 148-byte initiation or a 92-byte response addressed to `receiver`.
pub fn set_mac1(receiver: &PublicKey, msg: &mut [u8]) {
    let n = msg.len();
    let m = mac1(receiver, &msg[..n - 32]);
    msg[n - 32..n - 16].copy_from_slice(&m);
}

/// Whether a handshake message (initiation or response) carries a valid mac1 for `receiver`.
pub fn has_valid_mac1(receiver: &PublicKey, msg: &[u8]) -> bool {
    let n = msg.len();
    n >= 32 && mac1(receiver, &msg[..n - 32])[..] == msg[n - 32..n - 16]
}

/// Everything a device wants to send, in order.
pub fn drain(d: &mut Device) -> Vec<Transmit> {
    std::iter::from_fn(|| d.poll_transmit()).collect()
}

/// Maps an input byte to a step of the virtual clock, from nothing to past a session's lifetime.
pub fn time_step(b: u8) -> Duration {
    match b % 12 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        2 => Duration::from_millis(19),
        3 => Duration::from_millis(20),
        4 => Duration::from_millis(250),
        5 => Duration::from_millis(999),
        6 => Duration::from_secs(1),
        7 => Duration::from_secs(5),
        8 => Duration::from_secs(10),
        9 => Duration::from_secs(60),
        10 => Duration::from_secs(121),
        _ => Duration::from_secs(181),
    }
}

/// A minimal IPv4 packet from `src` to `dst` carrying `payload` (header checksum left zero: the
/// tunnel does not check it).
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()).min(usize::from(u16::MAX));
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(&payload[..total - 20]);
    p
}

/// Two devices, A (initiator) and B (responder), that completed a handshake: B has confirmed the
/// session with A's first keepalive, so data flows both ways.
pub struct Pair {
    /// The initiator.
    pub a: Device,
    /// The responder.
    pub b: Device,
    /// B as seen by A.
    pub b_at_a: PeerId,
    /// A as seen by B.
    pub a_at_b: PeerId,
    /// The virtual time the handshake completed at.
    pub start: Instant,
}

impl Pair {
    /// Runs a real handshake in-process; panics if it does not complete (that would be a bug).
    pub fn handshake(seed: u64) -> Self {
        let start = origin();
        let mut a = Device::new(Some(PrivateKey::from_bytes(INITIATOR_PRIVATE)), rng(seed), start, UNIX_ORIGIN);
        let mut b = Device::new(Some(PrivateKey::from_bytes(RESPONDER_PRIVATE)), rng(seed ^ 0x5555_5555), start, UNIX_ORIGIN);
        let mut cfg = PeerConfig::new(responder_public());
        cfg.endpoint = Some(B_ADDR);
        let b_at_a = a.add_peer(cfg).expect("add B to A");
        let mut cfg = PeerConfig::new(initiator_public());
        cfg.endpoint = Some(A_ADDR);
        let a_at_b = b.add_peer(cfg).expect("add A to B");
        let mut pair = Self { a, b, b_at_a, a_at_b, start };

        pair.a.initiate_handshake(start, b_at_a).expect("peer exists");
        let mut init = pair.a.poll_transmit().expect("initiation").payload;
        let r = pair.b.handle_datagram(start, A_ADDR, &mut init, &|_, _| true);
        assert_eq!(r, Ok(Received::Initiation(a_at_b)));
        let mut resp = pair.b.poll_transmit().expect("response").payload;
        let r = pair.a.handle_datagram(start, B_ADDR, &mut resp, &|_, _| true);
        assert_eq!(r, Ok(Received::Response(b_at_a)));
        let mut keepalive = pair.a.poll_transmit().expect("key confirmation").payload;
        assert_eq!(keepalive.len(), 32);
        let r = pair.b.handle_datagram(start, A_ADDR, &mut keepalive, &|_, _| true);
        assert_eq!(r, Ok(Received::Keepalive(a_at_b)));
        assert!(pair.a.poll_transmit().is_none() && pair.b.poll_transmit().is_none());
        pair
    }

    /// B's allowed-IPs check: only A, only from A's tunnel address.
    pub fn b_allows(&self) -> impl Fn(PeerId, IpAddr) -> bool {
        let a = self.a_at_b;
        move |peer, ip| peer == a && ip == IpAddr::V4(A_TUNNEL_IP)
    }

    /// A's allowed-IPs check: only B, only from B's tunnel address.
    pub fn a_allows(&self) -> impl Fn(PeerId, IpAddr) -> bool {
        let b = self.b_at_a;
        move |peer, ip| peer == b && ip == IpAddr::V4(B_TUNNEL_IP)
    }

    /// The receiver index A's data messages to B carry (B's index of its current session).
    pub fn live_index_at_b(&self) -> Option<u32> {
        self.b.peer(self.a_at_b)?.current_session().map(|s| s.local_index)
    }

    /// Every receiver index B would open data messages on, with the greatest counter received.
    pub fn b_windows(&self) -> Vec<(u32, Option<u64>)> {
        let Some(peer) = self.b.peer(self.a_at_b) else { return Vec::new() };
        let k = peer.keypairs();
        [&k.previous, &k.current, &k.next].into_iter().flatten().map(|s| (s.local_index, s.greatest_received())).collect()
    }

    /// Delivers everything both devices want to send to each other until both are quiet (bounded),
    /// checking that every delivery is handled without a panic.
    pub fn pump(&mut self, now: Instant) {
        let (a_ok, b_ok) = (self.a_allows(), self.b_allows());
        for _ in 0..8 {
            let from_a = drain(&mut self.a);
            let from_b = drain(&mut self.b);
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for mut t in from_a {
                assert_eq!(t.destination, B_ADDR);
                assert!(Message::parse(&t.payload).is_ok(), "A sent a malformed message");
                let _ = self.b.handle_datagram(now, A_ADDR, &mut t.payload, &b_ok);
            }
            for mut t in from_b {
                assert_eq!(t.destination, A_ADDR);
                assert!(Message::parse(&t.payload).is_ok(), "B sent a malformed message");
                let _ = self.a.handle_datagram(now, B_ADDR, &mut t.payload, &a_ok);
            }
        }
    }
}
