//! Interoperability with boringtun 0.7 (`boringtun::noise::Tunn`), run in process: every datagram
//! one side emits is handed to the other, so each test is a complete, byte-checked conversation
//! between two independent implementations of the protocol.
//!
//! Our [`Device`] runs on a virtual clock (`Harness::now`). boringtun reads the real clock itself
//! (its `mock-instant` feature only helps with a direct `mock_instant` dependency to advance that
//! clock). Nothing here calls boringtun's `update_timers`, so its own timers never fire and the
//! tests do not depend on how fast they run; where boringtun has to start a handshake on its own,
//! the test asks it to with `format_handshake_initiation`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_tunnel::constants::{REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_TIMEOUT};
use vpn_tunnel::{Device, PeerConfig, PeerId, Received};

/// The one real instant of the file: the origin of the virtual clock.
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

/// Wall-clock time handed to our device (only its TAI64N timestamps depend on it).
const UNIX_NOW: Duration = Duration::from_secs(1_700_000_000);

/// Our UDP address as boringtun sees it (it only takes the IP, for its cookies).
const OUR_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
const THEIR_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 51821);

/// Tunnel addresses: ours and boringtun's (the only sources our device accepts from it).
const OUR_TUN4: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
const THEIR_TUN4: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);
const OUR_TUN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x7, 0, 0, 0, 0, 0, 1);
const THEIR_TUN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x7, 0, 0, 0, 0, 0, 2);

const INITIATION: u32 = 1;
const RESPONSE: u32 = 2;
const COOKIE_REPLY: u32 = 3;
const DATA: u32 = 4;

// ---------------------------------------------------------------------------------------------
// Inner packets.

/// The Internet checksum (RFC 1071) over `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for b in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
            None => odd = Some(b),
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A payload that differs per packet, so a packet delivered in place of another is caught.
fn pattern(seq: u16, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seq as u8) ^ (seq >> 8) as u8).collect()
}

/// An IPv4 ICMP echo request (`reply`: echo reply) of `20 + 8 + payload` bytes, checksums valid.
fn icmp4(src: Ipv4Addr, dst: Ipv4Addr, reply: bool, seq: u16, payload: usize) -> Vec<u8> {
    let total = 20 + 8 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&seq.to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = if reply { 0 } else { 8 };
    p[24..26].copy_from_slice(&0x4242u16.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    p[28..].copy_from_slice(&pattern(seq, payload));
    let c = checksum(&[&p[20..]]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv6 ICMPv6 echo request (`reply`: echo reply) of `40 + 8 + payload` bytes, checksum valid.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, reply: bool, seq: u16, payload: usize) -> Vec<u8> {
    let upper = 8 + payload;
    let mut p = vec![0u8; 40 + upper];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(upper as u16).to_be_bytes());
    p[6] = 58; // ICMPv6
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = if reply { 129 } else { 128 };
    p[44..46].copy_from_slice(&0x4242u16.to_be_bytes());
    p[46..48].copy_from_slice(&seq.to_be_bytes());
    p[48..].copy_from_slice(&pattern(seq, payload));
    let pseudo_len = (upper as u32).to_be_bytes();
    let c = checksum(&[&p[8..40], &pseudo_len, &[0, 0, 0, 58], &p[40..]]);
    p[42..44].copy_from_slice(&c.to_be_bytes());
    p
}

/// The answer an echoing host would send: addresses swapped, type turned into a reply.
fn echo_of(packet: &[u8]) -> Vec<u8> {
    let mut p = packet.to_vec();
    match p[0] >> 4 {
        4 => {
            let (src, dst) =
                (Ipv4Addr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap()), Ipv4Addr::from(<[u8; 4]>::try_from(&p[16..20]).unwrap()));
            p[12..16].copy_from_slice(&dst.octets());
            p[16..20].copy_from_slice(&src.octets());
            p[20] = 0;
            p[22..24].fill(0);
            let c = checksum(&[&p[20..]]);
            p[22..24].copy_from_slice(&c.to_be_bytes());
        }
        6 => {
            let (src, dst) = (p[8..24].to_vec(), p[24..40].to_vec());
            p[8..24].copy_from_slice(&dst);
            p[24..40].copy_from_slice(&src);
            p[40] = 129;
            p[42..44].fill(0);
            let pseudo_len = ((p.len() - 40) as u32).to_be_bytes();
            let c = checksum(&[&p[8..40], &pseudo_len, &[0, 0, 0, 58], &p[40..]]);
            p[42..44].copy_from_slice(&c.to_be_bytes());
        }
        v => panic!("not an IP packet (version {v})"),
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Messages.

fn msg_type(d: &[u8]) -> u32 {
    u32::from_le_bytes(d[..4].try_into().unwrap())
}

fn le32(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(d[at..at + 4].try_into().unwrap())
}

/// The sender index of an initiation or response.
fn sender(d: &[u8]) -> u32 {
    assert!(matches!(msg_type(d), INITIATION | RESPONSE));
    le32(d, 4)
}

/// The receiver index of a response (8..12), a cookie reply or a data message (4..8).
fn receiver(d: &[u8]) -> u32 {
    match msg_type(d) {
        RESPONSE => le32(d, 8),
        COOKIE_REPLY | DATA => le32(d, 4),
        t => panic!("message type {t} has no receiver index"),
    }
}

/// The mac2 field of an initiation or a response (its last 16 bytes).
fn mac2(d: &[u8]) -> &[u8] {
    assert!(matches!(msg_type(d), INITIATION | RESPONSE));
    &d[d.len() - 16..]
}

/// Length of our data message carrying `inner` bytes: padded to 16, never beyond the MTU (1420).
fn our_data_len(inner: usize) -> usize {
    32 + ((inner + 15) & !15).min(1420.max(inner))
}

/// Length of boringtun's data message carrying `inner` bytes (boringtun does not pad).
fn bt_data_len(inner: usize) -> usize {
    32 + inner
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// What a datagram handed to boringtun produced.
#[derive(Debug, Default)]
struct BtOut {
    /// Datagrams boringtun wants sent to us, in order.
    network: Vec<Vec<u8>>,
    /// IP packets boringtun delivered to its tunnel interface.
    tunnel: Vec<Vec<u8>>,
}

/// What [`Harness::pump`] moved.
#[derive(Debug, Default)]
struct Pumped {
    /// IP packets our device delivered, in order.
    to_us: Vec<Vec<u8>>,
    /// IP packets boringtun delivered, in order.
    to_bt: Vec<Vec<u8>>,
    /// Receiver index of each data message our device accepted.
    our_rx_indices: Vec<u32>,
    /// Receiver index of each data message our device sent.
    our_tx_indices: Vec<u32>,
}

struct Options {
    seed: u64,
    psk: bool,
    /// Whether our device is configured with boringtun's endpoint (else it learns it).
    endpoint: bool,
    /// A rate limiter shared into boringtun with this many handshake messages per reset before
    /// it is under load (0: always under load); `None` keeps boringtun's per-tunnel default.
    bt_limit: Option<u64>,
}

impl Options {
    fn new(seed: u64) -> Self {
        Self { seed, psk: false, endpoint: true, bt_limit: None }
    }
}

struct Harness {
    dev: Device,
    peer: PeerId,
    now: Instant,
    bt: Tunn,
    /// Independent bookkeeping of the byte counters, by the documented rules: every datagram our
    /// device sent to the peer (cookie replies go to an unauthenticated source and are not the
    /// peer's), every data message and consumed handshake message it accepted from the peer.
    tx: u64,
    rx: u64,
    /// Messages of each type (index = type) our device sent to the peer, and accepted from it.
    sent: [u32; 5],
    accepted: [u32; 5],
}

fn allowed(_: PeerId, ip: IpAddr) -> bool {
    ip == IpAddr::V4(THEIR_TUN4) || ip == IpAddr::V6(THEIR_TUN6)
}

impl Harness {
    fn new(o: Options) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(o.seed);
        let mut secret = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        };
        let ours = secret();
        let theirs = secret();
        let psk = o.psk.then(&mut secret);

        let our_private = PrivateKey::from_bytes(ours);
        let our_public = our_private.public_key();
        let their_private = x25519::StaticSecret::from(theirs);
        let their_public = x25519::PublicKey::from(&their_private);
        // Both libraries derive the same public key from the same bytes.
        assert_eq!(x25519::PublicKey::from(&x25519::StaticSecret::from(ours)).as_bytes(), our_public.as_bytes());

        let now = start();
        let dev_rng = ChaCha20Rng::seed_from_u64(o.seed.wrapping_add(0x5eed));
        let mut dev = Device::new(Some(our_private), Box::new(dev_rng), now, UNIX_NOW);
        let mut config = PeerConfig::new(PublicKey(*their_public.as_bytes()));
        if let Some(psk) = psk {
            config.preshared_key = PresharedKey::from_bytes(psk);
        }
        config.endpoint = o.endpoint.then_some(THEIR_ADDR);
        let peer = dev.add_peer(config).unwrap();

        let limiter = o.bt_limit.map(|limit| Arc::new(RateLimiter::new(&their_public, limit)));
        let bt_index = rng.next_u32() >> 8; // boringtun shifts it left by 8
        let bt = Tunn::new(their_private, x25519::PublicKey::from(our_public.0), psk, None, bt_index, limiter);
        Self { dev, peer, now, bt, tx: 0, rx: 0, sent: [0; 5], accepted: [0; 5] }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Everything our device queued, in order, checked and counted.
    fn ours_out(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(t) = self.dev.poll_transmit() {
            assert_eq!(t.destination, THEIR_ADDR);
            let ty = msg_type(&t.payload);
            match t.peer {
                Some(p) => {
                    assert_eq!(p, self.peer);
                    assert_ne!(ty, COOKIE_REPLY);
                    self.tx += t.payload.len() as u64;
                    self.sent[ty as usize] += 1;
                }
                None => assert_eq!(ty, COOKIE_REPLY, "only cookie replies go out without a peer"),
            }
            out.push(t.payload);
        }
        out
    }

    /// Hands a datagram to our device; on success returns what it was and the delivered packet
    /// (empty unless a packet).
    fn deliver_to_us(&mut self, datagram: &[u8]) -> Result<(Received, Vec<u8>), vpn_tunnel::DropReason> {
        let mut buf = datagram.to_vec();
        let r = self.dev.handle_datagram(self.now, THEIR_ADDR, &mut buf, &allowed)?;
        let mut inner = Vec::new();
        match &r {
            Received::Packet { peer, range } => {
                assert_eq!(*peer, self.peer);
                inner = buf[range.clone()].to_vec();
            }
            Received::Keepalive(p) | Received::Initiation(p) | Received::Response(p) => assert_eq!(*p, self.peer),
            Received::CookieReply(p) => {
                assert_eq!(*p, self.peer);
                return Ok((r, inner));
            }
            Received::CookieSent => return Ok((r, inner)),
        }
        self.rx += datagram.len() as u64;
        self.accepted[msg_type(datagram) as usize] += 1;
        Ok((r, inner))
    }

    /// Hands a datagram from us to boringtun, then drains what it queued (its API: repeat with an
    /// empty datagram after each `WriteToNetwork`).
    fn deliver_to_bt(&mut self, datagram: &[u8]) -> Result<BtOut, WireGuardError> {
        let mut dst = vec![0u8; 65536];
        let mut out = BtOut::default();
        let mut input = datagram;
        loop {
            match self.bt.decapsulate(Some(OUR_ADDR.ip()), input, &mut dst) {
                TunnResult::Done => break,
                TunnResult::Err(e) => return Err(e),
                TunnResult::WriteToNetwork(d) => {
                    out.network.push(d.to_vec());
                    input = &[];
                }
                TunnResult::WriteToTunnelV4(p, src) => {
                    assert_eq!(IpAddr::V4(src), IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap()));
                    out.tunnel.push(p.to_vec());
                    break;
                }
                TunnResult::WriteToTunnelV6(p, src) => {
                    assert_eq!(IpAddr::V6(src), IpAddr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap()));
                    out.tunnel.push(p.to_vec());
                    break;
                }
            }
        }
        Ok(out)
    }

    /// boringtun sends an IP packet: the data message, or an initiation when it has no session
    /// (then the packet waits in its queue); `None` when it queued it behind a pending handshake.
    fn bt_send(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let mut dst = vec![0u8; 65536];
        match self.bt.encapsulate(packet, &mut dst) {
            TunnResult::WriteToNetwork(d) => Some(d.to_vec()),
            TunnResult::Done => None,
            other => panic!("boringtun encapsulate: {other:?}"),
        }
    }

    /// boringtun starts a handshake now.
    fn bt_initiate(&mut self, force: bool) -> Vec<u8> {
        let mut dst = vec![0u8; 2048];
        match self.bt.format_handshake_initiation(&mut dst, force) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("boringtun format_handshake_initiation: {other:?}"),
        }
    }

    /// Carries datagrams both ways until both sides are quiet, starting with `to_bt` (from us).
    /// With `echo`, boringtun answers every IP packet it receives with [`echo_of`] it.
    fn pump(&mut self, mut to_bt: Vec<Vec<u8>>, echo: bool) -> Pumped {
        let mut moved = Pumped::default();
        while !to_bt.is_empty() {
            for d in to_bt {
                if msg_type(&d) == DATA {
                    moved.our_tx_indices.push(receiver(&d));
                }
                let out = self.deliver_to_bt(&d).unwrap_or_else(|e| panic!("boringtun refused a type {} message: {e:?}", msg_type(&d)));
                let mut back = out.network;
                for p in out.tunnel {
                    if echo {
                        back.extend(self.bt_send(&echo_of(&p)));
                    }
                    moved.to_bt.push(p);
                }
                for b in back {
                    let (r, inner) = self.deliver_to_us(&b).unwrap_or_else(|e| panic!("we refused a type {} message: {e:?}", msg_type(&b)));
                    if let Received::Packet { .. } = r {
                        moved.to_us.push(inner);
                    }
                    if msg_type(&b) == DATA {
                        moved.our_rx_indices.push(receiver(&b));
                    }
                }
            }
            to_bt = self.ours_out();
        }
        moved
    }

    /// We send `packet` and boringtun echoes it: both deliveries byte-exact.
    fn ping(&mut self, packet: &[u8]) -> Pumped {
        self.dev.send(self.now, self.peer, packet).unwrap();
        let out = self.ours_out();
        let moved = self.pump(out, true);
        assert_eq!(moved.to_bt, vec![packet.to_vec()]);
        assert_eq!(moved.to_us, vec![echo_of(packet)]);
        moved
    }

    /// boringtun sends `packet` on its current session and we deliver it byte-exact.
    fn bt_ping(&mut self, packet: &[u8]) -> Vec<u8> {
        let d = self.bt_send(packet).expect("boringtun has a session");
        assert_eq!(msg_type(&d), DATA);
        assert_eq!(d.len(), bt_data_len(packet.len()));
        let (r, inner) = self.deliver_to_us(&d).unwrap();
        assert_eq!(r, Received::Packet { peer: self.peer, range: 16..16 + packet.len() });
        assert_eq!(inner, packet);
        d
    }

    /// The handshake with our device as initiator, started by the first packet we send (which
    /// then goes out as the key confirmation); returns the initiation.
    fn we_initiate(&mut self, first: &[u8]) -> Vec<u8> {
        self.dev.send(self.now, self.peer, first).unwrap();
        let out = self.ours_out();
        assert_eq!(out.len(), 1);
        let init = out[0].clone();
        assert_eq!((msg_type(&init), init.len()), (INITIATION, 148));
        assert_eq!(mac2(&init), [0u8; 16], "no cookie: mac2 is zero");

        let bt = self.deliver_to_bt(&init).unwrap();
        assert!(bt.tunnel.is_empty());
        assert_eq!(bt.network.len(), 1);
        let resp = &bt.network[0];
        assert_eq!((msg_type(resp), resp.len()), (RESPONSE, 92));
        assert_eq!(receiver(resp), sender(&init));
        assert_eq!(self.deliver_to_us(resp).unwrap().0, Received::Response(self.peer));
        let session = self.dev.peer(self.peer).unwrap().current_session().unwrap().clone();
        assert!(session.initiator);
        assert_eq!((session.local_index, session.remote_index), (sender(&init), sender(resp)));

        // The staged packet is the key confirmation.
        let out = self.ours_out();
        assert_eq!(out.len(), 1);
        assert_eq!((msg_type(&out[0]), out[0].len(), receiver(&out[0])), (DATA, our_data_len(first.len()), sender(resp)));
        let bt = self.deliver_to_bt(&out[0]).unwrap();
        assert!(bt.network.is_empty());
        assert_eq!(bt.tunnel, vec![first.to_vec()]);
        init
    }

    /// The handshake with boringtun as initiator, started by the first packet it sends; returns
    /// the initiation.
    fn bt_initiates(&mut self, first: &[u8]) -> Vec<u8> {
        let init = self.bt_send(first).expect("an initiation");
        assert_eq!((msg_type(&init), init.len()), (INITIATION, 148));
        assert_eq!(self.deliver_to_us(&init).unwrap().0, Received::Initiation(self.peer));
        assert_eq!(self.dev.peer_info(self.peer, self.now).unwrap().endpoint, Some(THEIR_ADDR));
        let out = self.ours_out();
        assert_eq!(out.len(), 1);
        let resp = out[0].clone();
        assert_eq!((msg_type(&resp), resp.len(), receiver(&resp)), (RESPONSE, 92, sender(&init)));
        self.confirm_as_responder(&init, &resp, first)
    }

    /// boringtun consumes our response; its keepalive confirms the session on our side, then
    /// its queued packet arrives. Returns the initiation.
    fn confirm_as_responder(&mut self, init: &[u8], resp: &[u8], first: &[u8]) -> Vec<u8> {
        let bt = self.deliver_to_bt(resp).unwrap();
        assert!(bt.tunnel.is_empty());
        assert_eq!(bt.network.len(), 2, "a keepalive, then the queued packet");
        let (keepalive, data) = (&bt.network[0], &bt.network[1]);
        assert_eq!((msg_type(keepalive), keepalive.len(), receiver(keepalive)), (DATA, 32, sender(resp)));
        assert_eq!((msg_type(data), data.len(), receiver(data)), (DATA, bt_data_len(first.len()), sender(resp)));
        assert_eq!(self.deliver_to_us(keepalive).unwrap().0, Received::Keepalive(self.peer));
        let session = self.dev.peer(self.peer).unwrap().current_session().unwrap().clone();
        assert!(!session.initiator);
        assert_eq!((session.local_index, session.remote_index), (sender(resp), sender(init)));
        let (r, inner) = self.deliver_to_us(data).unwrap();
        assert!(matches!(r, Received::Packet { .. }));
        assert_eq!(inner, first);
        init.to_vec()
    }

    fn current_indices(&self) -> (u32, u32) {
        let s = self.dev.peer(self.peer).unwrap().current_session().unwrap();
        (s.local_index, s.remote_index)
    }

    /// The device's counters equal the bookkeeping.
    fn assert_counters(&self) {
        let info = self.dev.peer_info(self.peer, self.now).unwrap();
        assert_eq!((info.tx_bytes, info.rx_bytes), (self.tx, self.rx), "device counters vs the messages exchanged");
        assert_eq!(self.dev.stats().total_drops(), 0, "{:?}", self.dev.stats().nonzero().collect::<Vec<_>>());
    }
}

/// A mix of IPv4 and IPv6 packets of awkward sizes, from our tunnel address or boringtun's.
fn mixed_packets(ours: bool, seq0: u16) -> Vec<Vec<u8>> {
    let (s4, d4, s6, d6) = if ours { (OUR_TUN4, THEIR_TUN4, OUR_TUN6, THEIR_TUN6) } else { (THEIR_TUN4, OUR_TUN4, THEIR_TUN6, OUR_TUN6) };
    vec![
        icmp6(s6, d6, false, seq0, 56),       // 104 bytes
        icmp6(s6, d6, false, seq0 + 1, 29),   // 77: padded
        icmp6(s6, d6, false, seq0 + 2, 0),    // 48: bare header
        icmp4(s4, d4, false, seq0 + 3, 0),    // 28
        icmp4(s4, d4, false, seq0 + 4, 1),    // 29
        icmp4(s4, d4, false, seq0 + 5, 1392), // 1420: the MTU, not padded beyond it
        icmp6(s6, d6, false, seq0 + 6, 1372), // 1420
        icmp4(s4, d4, false, seq0 + 7, 1371), // 1419: padded to 1420 only
    ]
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// We initiate (with a pre-shared key), boringtun responds; ten 84-byte pings as in the kernel
/// selftest, then IPv6 and odd sizes both ways and a keepalive; counters exact.
#[test]
fn we_initiate_boringtun_responds() {
    let mut h = Harness::new(Options { psk: true, ..Options::new(1) });
    let pings: Vec<Vec<u8>> = (0..10).map(|i| icmp4(OUR_TUN4, THEIR_TUN4, false, i, 56)).collect();
    assert_eq!(pings[0].len(), 84);

    h.we_initiate(&pings[0]);
    // boringtun answers the first ping on the new session, then nine more round trips.
    h.bt_ping(&echo_of(&pings[0]));
    for ping in &pings[1..] {
        h.advance(Duration::from_millis(100));
        let moved = h.ping(ping);
        assert_eq!(moved.our_tx_indices.len(), 1);
    }
    // The kernel selftest's numbers on the initiating side, with boringtun's unpadded replies:
    // tx = 148 + 10 × (32 + 96), rx = 92 + 10 × (32 + 84).
    let info = h.dev.peer_info(h.peer, h.now).unwrap();
    assert_eq!(info.tx_bytes, 148 + 10 * 128);
    assert_eq!(info.rx_bytes, 92 + 10 * 116);
    h.assert_counters();
    let (_, bt_tx, bt_rx, _, _) = h.bt.stats();
    assert_eq!((bt_tx, bt_rx), (10 * 84, 10 * 84), "boringtun counts IP bytes");

    // IPv6 and odd sizes, both ways, byte for byte; our messages padded to 16 within the MTU.
    for p in mixed_packets(true, 100) {
        h.advance(Duration::from_millis(10));
        h.dev.send(h.now, h.peer, &p).unwrap();
        let out = h.ours_out();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), our_data_len(p.len()));
        let bt = h.deliver_to_bt(&out[0]).unwrap();
        assert_eq!(bt.tunnel, vec![p]);
        assert!(bt.network.is_empty());
    }
    for p in mixed_packets(false, 200) {
        h.advance(Duration::from_millis(10));
        h.bt_ping(&p);
    }
    h.assert_counters();

    // Data came in last: ten seconds later our device sends a keepalive, which boringtun takes.
    let deadline = h.dev.poll_timeout().unwrap();
    assert!(deadline <= h.now + Duration::from_secs(10));
    h.now = deadline;
    h.dev.handle_timeout(h.now);
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    assert_eq!((msg_type(&out[0]), out[0].len()), (DATA, 32));
    let bt = h.deliver_to_bt(&out[0]).unwrap();
    assert!(bt.network.is_empty() && bt.tunnel.is_empty());
    assert_eq!((h.sent, h.accepted), ([0, 1, 0, 0, 10 + 8 + 1], [0, 0, 1, 0, 10 + 8]));
    h.assert_counters();
}

/// boringtun initiates, we respond: our session waits for boringtun's keepalive before we send
/// on it; its queued packet, then traffic both ways.
#[test]
fn boringtun_initiates_we_respond() {
    let mut h = Harness::new(Options { endpoint: false, ..Options::new(2) });
    let first = icmp6(THEIR_TUN6, OUR_TUN6, false, 1, 56);
    let init = h.bt_initiates(&first);
    assert_ne!(h.dev.peer_info(h.peer, h.now).unwrap().latest_timestamp, vpn_crypto::Tai64N::ZERO);
    // Responder side: rx = initiation + keepalive + boringtun's data; tx = response + ours.
    let mut rx = 148 + 32 + bt_data_len(first.len());
    let mut tx = 92;

    let (local, remote) = h.current_indices();
    assert_eq!(remote, sender(&init));
    for i in 0..10u16 {
        h.advance(Duration::from_millis(50));
        let p =
            if i % 2 == 0 { icmp4(OUR_TUN4, THEIR_TUN4, false, i, 56) } else { icmp6(OUR_TUN6, THEIR_TUN6, false, i, 100 + i as usize) };
        let moved = h.ping(&p);
        assert_eq!(moved.our_tx_indices, vec![remote]);
        assert_eq!(moved.our_rx_indices, vec![local]);
        tx += our_data_len(p.len());
        rx += bt_data_len(p.len());
    }
    for p in mixed_packets(false, 300) {
        h.bt_ping(&p);
        rx += bt_data_len(p.len());
    }
    for p in mixed_packets(true, 400) {
        h.ping(&p);
        tx += our_data_len(p.len());
        rx += bt_data_len(p.len());
    }
    assert_eq!(h.accepted, [0, 1, 0, 0, 1 + 1 + 10 + 8 + 8]);
    assert_eq!(h.sent, [0, 0, 1, 0, 10 + 8]);
    let info = h.dev.peer_info(h.peer, h.now).unwrap();
    assert_eq!((info.rx_bytes, info.tx_bytes), (rx as u64, tx as u64));
    assert!(info.has_session);
    h.assert_counters();
}

/// A rekey driven by our clock: with traffic every ten seconds, the first packet sent once the
/// session is REKEY_AFTER_TIME old starts a second handshake; boringtun answers, switches to the
/// new session on our keepalive, and traffic continues on it past the old session's end.
#[test]
fn rekey_after_time_with_traffic() {
    let mut h = Harness::new(Options::new(3));
    let t0 = h.now;
    let first = icmp4(OUR_TUN4, THEIR_TUN4, false, 0, 56);
    h.we_initiate(&first);
    let (old_local, old_remote) = h.current_indices();

    let mut seq = 1;
    let mut rekeyed_at = None;
    while h.now < t0 + REJECT_AFTER_TIME + Duration::from_secs(40) {
        h.advance(Duration::from_secs(10));
        let initiations = h.sent[INITIATION as usize];
        let before = h.current_indices();
        // Timers first (a keepalive answering the last echo), as a driver would.
        h.dev.handle_timeout(h.now);
        let out = h.ours_out();
        h.pump(out, true);

        let p = if seq % 3 == 0 { icmp6(OUR_TUN6, THEIR_TUN6, false, seq, 64) } else { icmp4(OUR_TUN4, THEIR_TUN4, false, seq, 56) };
        seq += 1;
        let moved = h.ping(&p);
        if h.sent[INITIATION as usize] > initiations {
            // The first packet sent (keepalive or ping) once the session is 120 s old carried
            // the rekey; boringtun switched to the new session on our key confirmation.
            assert_eq!(h.sent[INITIATION as usize], initiations + 1);
            assert!(rekeyed_at.is_none(), "one rekey only");
            assert!(h.now - t0 >= REKEY_AFTER_TIME);
            assert_eq!(before, (old_local, old_remote));
            rekeyed_at = Some(h.now);
        }
        let expected = if rekeyed_at.is_none() { (old_local, old_remote) } else { h.current_indices() };
        assert_eq!(moved.our_tx_indices.last(), Some(&expected.1));
        assert_eq!(moved.our_rx_indices, vec![expected.0]);
    }
    let rekeyed_at = rekeyed_at.expect("a second handshake");
    assert_eq!(rekeyed_at - t0, Duration::from_secs(120));
    let (new_local, new_remote) = h.current_indices();
    assert_ne!(new_local, old_local, "the session changed");
    assert_ne!(new_remote, old_remote);
    assert!(h.dev.peer(h.peer).unwrap().current_session().unwrap().initiator);
    assert_eq!((h.sent[INITIATION as usize], h.accepted[RESPONSE as usize]), (2, 2));
    // Still both ways after the old session is past REJECT_AFTER_TIME.
    assert!(h.now - t0 > REJECT_AFTER_TIME);
    let moved = h.ping(&icmp4(OUR_TUN4, THEIR_TUN4, false, 999, 200));
    assert_eq!(moved.our_rx_indices, vec![new_local]);
    h.bt_ping(&icmp6(THEIR_TUN6, OUR_TUN6, false, 999, 300));
    h.assert_counters();
}

/// boringtun starts a second handshake (asked to: its own timers run on the real clock): we
/// answer, keep sending on the old session until boringtun's keepalive confirms the new one, and
/// then use the new one both ways.
#[test]
fn boringtun_rekeys_we_confirm() {
    let mut h = Harness::new(Options { psk: true, ..Options::new(4) });
    let first = icmp4(THEIR_TUN4, OUR_TUN4, false, 0, 56);
    h.bt_initiates(&first);
    h.ping(&icmp4(OUR_TUN4, THEIR_TUN4, false, 1, 56));
    let (old_local, old_remote) = h.current_indices();

    h.advance(Duration::from_secs(60));
    let init = h.bt_initiate(false);
    assert_eq!(h.deliver_to_us(&init).unwrap().0, Received::Initiation(h.peer));
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    let resp = out[0].clone();
    assert_eq!((msg_type(&resp), receiver(&resp)), (RESPONSE, sender(&init)));

    // Unconfirmed: we still send on the old session, and boringtun still takes it.
    assert_eq!(h.current_indices(), (old_local, old_remote));
    let p = icmp4(OUR_TUN4, THEIR_TUN4, false, 2, 56);
    h.dev.send(h.now, h.peer, &p).unwrap();
    let out = h.ours_out();
    assert_eq!((out.len(), receiver(&out[0])), (1, old_remote));
    assert_eq!(h.deliver_to_bt(&out[0]).unwrap().tunnel, vec![p]);

    // boringtun takes the response and confirms with a keepalive on the new session.
    let bt = h.deliver_to_bt(&resp).unwrap();
    assert_eq!(bt.network.len(), 1);
    assert_eq!((msg_type(&bt.network[0]), bt.network[0].len(), receiver(&bt.network[0])), (DATA, 32, sender(&resp)));
    assert_eq!(h.deliver_to_us(&bt.network[0]).unwrap().0, Received::Keepalive(h.peer));
    assert_eq!(h.current_indices(), (sender(&resp), sender(&init)));
    let kp = h.dev.peer(h.peer).unwrap().keypairs();
    assert_eq!(kp.previous.as_ref().unwrap().local_index, old_local);
    assert!(kp.next.is_none());

    let moved = h.ping(&icmp6(OUR_TUN6, THEIR_TUN6, false, 3, 56));
    assert_eq!((moved.our_tx_indices, moved.our_rx_indices), (vec![sender(&init)], vec![sender(&resp)]));
    h.bt_ping(&icmp4(THEIR_TUN4, OUR_TUN4, false, 4, 1000));
    assert_eq!((h.accepted[INITIATION as usize], h.sent[RESPONSE as usize]), (2, 2));
    h.assert_counters();
}

/// Our device under load answers boringtun's initiation with a cookie reply instead of
/// processing it; boringtun's retry carries a mac2 made with that cookie and is accepted.
#[test]
fn cookie_from_us_under_load() {
    let mut h = Harness::new(Options::new(5));
    h.dev.set_handshake_backlog(1024, 1024);

    let first = icmp4(THEIR_TUN4, OUR_TUN4, false, 0, 56);
    let init1 = h.bt_send(&first).expect("an initiation");
    assert_eq!(mac2(&init1), [0u8; 16]);
    assert_eq!(h.deliver_to_us(&init1).unwrap().0, Received::CookieSent);
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    let cookie = out[0].clone();
    assert_eq!((msg_type(&cookie), cookie.len(), receiver(&cookie)), (COOKIE_REPLY, 64, sender(&init1)));
    assert_eq!(h.dev.stats().cookie_replies_sent, 1);
    assert!(h.dev.peer(h.peer).unwrap().keypairs().is_empty(), "not processed");

    // boringtun takes the cookie and retries (its retransmit timer would; here we ask).
    let bt = h.deliver_to_bt(&cookie).unwrap();
    assert!(bt.network.is_empty() && bt.tunnel.is_empty());
    h.advance(REKEY_TIMEOUT);
    let init2 = h.bt_initiate(true);
    assert_ne!(mac2(&init2), [0u8; 16], "the retry carries a mac2");
    assert_eq!(h.deliver_to_us(&init2).unwrap().0, Received::Initiation(h.peer));
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    let resp = out[0].clone();
    assert_eq!((msg_type(&resp), receiver(&resp)), (RESPONSE, sender(&init2)));
    h.confirm_as_responder(&init2, &resp, &first);

    // Still under load: an initiation without mac2 (the first one again) only gets a cookie.
    assert_eq!(h.deliver_to_us(&init1).unwrap().0, Received::CookieSent);
    let out = h.ours_out();
    assert_eq!((out.len(), msg_type(&out[0])), (1, COOKIE_REPLY));
    assert_eq!(h.dev.stats().cookie_replies_sent, 2);

    for i in 1..5u16 {
        h.ping(&icmp4(OUR_TUN4, THEIR_TUN4, false, i, 56));
    }
    // Neither the unprocessed initiations nor the cookie replies count.
    assert_eq!(h.accepted, [0, 1, 0, 0, 2 + 4]);
    assert_eq!(h.sent, [0, 0, 1, 0, 4]);
    let info = h.dev.peer_info(h.peer, h.now).unwrap();
    assert_eq!(info.rx_bytes, 148 + 32 + 116 + 4 * 116);
    assert_eq!(info.tx_bytes, 92 + 4 * 128);
    h.assert_counters();
}

/// boringtun under load (a rate limiter with limit 0) answers our initiation with a cookie reply;
/// we take it, and our retransmitted initiation carries a mac2 that boringtun accepts.
#[test]
fn cookie_from_boringtun_under_load() {
    let mut h = Harness::new(Options { bt_limit: Some(0), psk: true, ..Options::new(6) });
    let first = icmp4(OUR_TUN4, THEIR_TUN4, false, 0, 56);
    h.dev.send(h.now, h.peer, &first).unwrap();
    let out = h.ours_out();
    let init1 = out[0].clone();
    assert_eq!((out.len(), msg_type(&init1)), (1, INITIATION));
    assert_eq!(mac2(&init1), [0u8; 16]);

    let bt = h.deliver_to_bt(&init1).unwrap();
    assert!(bt.tunnel.is_empty());
    assert_eq!(bt.network.len(), 1);
    let cookie = bt.network[0].clone();
    assert_eq!((msg_type(&cookie), cookie.len(), receiver(&cookie)), (COOKIE_REPLY, 64, sender(&init1)));
    assert_eq!(h.deliver_to_us(&cookie).unwrap().0, Received::CookieReply(h.peer));
    assert!(h.ours_out().is_empty(), "at most one initiation per REKEY_TIMEOUT");

    // Our retransmission, when its timer fires.
    let deadline = h.dev.poll_timeout().unwrap();
    assert!(deadline >= h.now + REKEY_TIMEOUT);
    h.now = deadline;
    h.dev.handle_timeout(h.now);
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    let init2 = out[0].clone();
    assert_eq!(msg_type(&init2), INITIATION);
    assert_ne!(mac2(&init2), [0u8; 16], "the retry carries a mac2");

    let bt = h.deliver_to_bt(&init2).unwrap();
    assert_eq!(bt.network.len(), 1);
    let resp = bt.network[0].clone();
    assert_eq!((msg_type(&resp), receiver(&resp)), (RESPONSE, sender(&init2)));
    assert_eq!(h.deliver_to_us(&resp).unwrap().0, Received::Response(h.peer));
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    assert_eq!(h.deliver_to_bt(&out[0]).unwrap().tunnel, vec![first]);
    assert_eq!(h.current_indices(), (sender(&init2), sender(&resp)));

    h.bt_ping(&icmp4(THEIR_TUN4, OUR_TUN4, true, 0, 56));
    for i in 1..5u16 {
        h.ping(&icmp6(OUR_TUN6, THEIR_TUN6, false, i, 56));
    }
    // Both initiations count as sent, the cookie reply not as received.
    assert_eq!(h.sent, [0, 2, 0, 0, 5]);
    assert_eq!(h.accepted, [0, 0, 1, 0, 5]);
    let info = h.dev.peer_info(h.peer, h.now).unwrap();
    assert_eq!(info.tx_bytes, 2 * 148 + 128 + 4 * our_data_len(104) as u64);
    assert_eq!(info.rx_bytes, 92 + 116 + 4 * 136);
    h.assert_counters();
}

/// boringtun initiates while under load itself: our response lacks a mac2, so boringtun answers
/// it with a cookie reply; we take it (it names our response's index), and our response to
/// boringtun's next initiation carries a mac2 and completes the handshake.
#[test]
fn cookie_from_boringtun_for_our_response() {
    let mut h = Harness::new(Options { bt_limit: Some(0), ..Options::new(7) });
    let first = icmp4(THEIR_TUN4, OUR_TUN4, false, 0, 56);
    let init1 = h.bt_send(&first).expect("an initiation");
    assert_eq!(h.deliver_to_us(&init1).unwrap().0, Received::Initiation(h.peer));
    let resp1 = h.ours_out().remove(0);
    assert_eq!(mac2(&resp1), [0u8; 16]);

    let bt = h.deliver_to_bt(&resp1).unwrap();
    assert_eq!(bt.network.len(), 1);
    let cookie = bt.network[0].clone();
    assert_eq!((msg_type(&cookie), receiver(&cookie)), (COOKIE_REPLY, sender(&resp1)));
    assert_eq!(h.deliver_to_us(&cookie).unwrap().0, Received::CookieReply(h.peer));

    h.advance(REKEY_TIMEOUT);
    let init2 = h.bt_initiate(true);
    assert_eq!(h.deliver_to_us(&init2).unwrap().0, Received::Initiation(h.peer));
    let resp2 = h.ours_out().remove(0);
    assert_ne!(mac2(&resp2), [0u8; 16], "our response carries a mac2");
    h.confirm_as_responder(&init2, &resp2, &first);
    h.ping(&icmp4(OUR_TUN4, THEIR_TUN4, false, 1, 56));
    assert_eq!(h.sent, [0, 0, 2, 0, 1]);
    h.assert_counters();
}

/// Our device, initiating while under load, answers boringtun's response (no mac2) with a cookie
/// reply; boringtun takes it, and its response to our retransmitted initiation carries a mac2.
#[test]
fn cookie_from_us_for_boringtun_response() {
    let mut h = Harness::new(Options::new(8));
    h.dev.set_handshake_backlog(1024, 1024);
    let first = icmp6(OUR_TUN6, THEIR_TUN6, false, 0, 56);
    h.dev.send(h.now, h.peer, &first).unwrap();
    let init1 = h.ours_out().remove(0);
    let resp1 = h.deliver_to_bt(&init1).unwrap().network.remove(0);
    assert_eq!((msg_type(&resp1), mac2(&resp1)), (RESPONSE, [0u8; 16].as_slice()));
    assert_eq!(h.deliver_to_us(&resp1).unwrap().0, Received::CookieSent);
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    assert_eq!((msg_type(&out[0]), receiver(&out[0])), (COOKIE_REPLY, sender(&resp1)));
    let bt = h.deliver_to_bt(&out[0]).unwrap();
    assert!(bt.network.is_empty() && bt.tunnel.is_empty());
    assert!(h.dev.peer(h.peer).unwrap().handshake_pending(), "the response was not processed");

    h.now = h.dev.poll_timeout().unwrap();
    h.dev.handle_timeout(h.now);
    let init2 = h.ours_out().remove(0);
    assert_eq!(msg_type(&init2), INITIATION);
    let resp2 = h.deliver_to_bt(&init2).unwrap().network.remove(0);
    assert_eq!((msg_type(&resp2), receiver(&resp2)), (RESPONSE, sender(&init2)));
    assert_ne!(mac2(&resp2), [0u8; 16], "boringtun's response carries a mac2");
    assert_eq!(h.deliver_to_us(&resp2).unwrap().0, Received::Response(h.peer));
    let out = h.ours_out();
    assert_eq!(out.len(), 1);
    assert_eq!(h.deliver_to_bt(&out[0]).unwrap().tunnel, vec![first]);
    h.bt_ping(&icmp4(THEIR_TUN4, OUR_TUN4, false, 1, 56));
    assert_eq!(h.dev.stats().cookie_replies_sent, 1);
    assert_eq!((h.sent, h.accepted), ([0, 2, 0, 0, 1], [0, 0, 1, 0, 1]));
    let info = h.dev.peer_info(h.peer, h.now).unwrap();
    assert_eq!((info.tx_bytes, info.rx_bytes), (2 * 148 + our_data_len(104) as u64, 92 + 116));
    h.assert_counters();
}

/// Both sides initiate at once, each with a packet waiting. Both implementations let the peer's
/// initiation win over their own, and boringtun, still holding its packet after answering, starts
/// yet another handshake at once; whatever the exchange, the two must settle on a working session
/// within a retransmission and deliver both packets exactly once.
#[test]
fn simultaneous_initiations_converge() {
    let mut h = Harness::new(Options { psk: true, ..Options::new(9) });
    let t0 = h.now;
    let ours = icmp4(OUR_TUN4, THEIR_TUN4, false, 0, 56);
    let theirs = icmp6(THEIR_TUN6, OUR_TUN6, false, 0, 56);
    h.dev.send(h.now, h.peer, &ours).unwrap();
    let init_a = h.ours_out();
    let init_b = h.bt_send(&theirs).expect("an initiation");
    assert_eq!((msg_type(&init_a[0]), msg_type(&init_b)), (INITIATION, INITIATION));

    // (With these seeds: boringtun answers our initiation and, still holding its packet, at once
    // sends a second initiation, which forgets its first; we take boringtun's first, then drop its
    // response to ours (our handshake gave way: unknown index) and its second (the 20 ms flood
    // rule); boringtun drops our response (its first handshake is forgotten). Our retransmission
    // about 5 s later completes, and boringtun's third initiation, sent with its response, rekeys
    // on top of it.)
    let net = h.converge(init_a, vec![init_b], t0 + 2 * REKEY_TIMEOUT);
    assert_eq!(net.moved.to_bt, vec![ours], "{net:#?}");
    assert_eq!(net.moved.to_us, vec![theirs], "{net:#?}");
    assert!(h.dev.peer_info(h.peer, h.now).unwrap().has_session, "{net:#?}");
    // Both ways on the sessions each side now uses.
    let (local, remote) = h.current_indices();
    let moved = h.ping(&icmp4(OUR_TUN4, THEIR_TUN4, false, 1, 56));
    assert_eq!((moved.our_tx_indices, moved.our_rx_indices), (vec![remote], vec![local]));
    let d = h.bt_ping(&icmp4(THEIR_TUN4, OUR_TUN4, false, 2, 56));
    assert_eq!(receiver(&d), local);
    // Byte counters still follow the rules; the drops are the messages the race made stale.
    let info = h.dev.peer_info(h.peer, h.now).unwrap();
    assert_eq!((info.tx_bytes, info.rx_bytes), (h.tx, h.rx));
    assert_eq!(h.dev.stats().total_drops(), net.our_drops.len() as u64, "{net:#?}");
}

/// What [`Harness::converge`] saw.
#[derive(Debug, Default)]
struct Network {
    moved: Pumped,
    our_drops: Vec<vpn_tunnel::DropReason>,
    bt_errors: Vec<String>,
    /// "who <- type/len: outcome", in order.
    trace: Vec<String>,
}

impl Harness {
    /// Delivers datagrams both ways until both sides are quiet, then fires our device's timers
    /// (boringtun's run on the real clock and are not driven), until `until`.
    fn converge(&mut self, mut to_bt: Vec<Vec<u8>>, mut to_us: Vec<Vec<u8>>, until: Instant) -> Network {
        let mut net = Network::default();
        let t0 = self.now;
        loop {
            while !to_bt.is_empty() || !to_us.is_empty() {
                for d in std::mem::take(&mut to_bt) {
                    let at = (self.now - t0).as_millis();
                    match self.deliver_to_bt(&d) {
                        Ok(out) => {
                            let sent: Vec<_> = out.network.iter().map(|n| (msg_type(n), n.len())).collect();
                            net.trace.push(format!(
                                "{at} ms bt <- {}/{}: sends {sent:?}, delivers {}",
                                msg_type(&d),
                                d.len(),
                                out.tunnel.len()
                            ));
                            to_us.extend(out.network);
                            net.moved.to_bt.extend(out.tunnel);
                        }
                        Err(e) => {
                            net.trace.push(format!("{at} ms bt <- {}/{}: {e:?}", msg_type(&d), d.len()));
                            net.bt_errors.push(format!("{e:?}"));
                        }
                    }
                }
                for d in std::mem::take(&mut to_us) {
                    let at = (self.now - t0).as_millis();
                    let r = self.deliver_to_us(&d);
                    net.trace.push(format!("{at} ms us <- {}/{}: {:?}", msg_type(&d), d.len(), r.as_ref().map(|x| &x.0)));
                    match r {
                        Ok((Received::Packet { .. }, inner)) => net.moved.to_us.push(inner),
                        Ok(_) => {}
                        Err(e) => net.our_drops.push(e),
                    }
                }
                to_bt = self.ours_out();
            }
            match self.dev.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.dev.handle_timeout(self.now);
                    to_bt = self.ours_out();
                }
                _ => return net,
            }
        }
    }
}
