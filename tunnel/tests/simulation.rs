//! Two `Device`s on a virtual clock over a simulated link that can lose, delay, reorder and
//! duplicate datagrams. Each test drives the protocol through one of its timers or defences and
//! checks what went over the wire and when. Everything is seeded: a run is reproducible.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use vpn_crypto::{PrivateKey, Tai64N};
use vpn_tunnel::constants::*;
use vpn_tunnel::{Device, DropReason, PeerConfig, PeerId, Received};

#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

const UNIX_START: Duration = Duration::from_secs(1_700_000_000);

/// A datagram on its way.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    seq: u64,
    to: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

/// One direction of the link.
#[derive(Clone, Copy)]
struct Path {
    loss: f64,
    duplicate: f64,
    latency: Duration,
    jitter: Duration,
    up: bool,
}

impl Default for Path {
    fn default() -> Self {
        Path { loss: 0.0, duplicate: 0.0, latency: Duration::from_millis(10), jitter: Duration::ZERO, up: true }
    }
}

/// What went over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    at: Duration,
    from: usize,
    kind: u8,
    len: usize,
}

/// A device's RNG that counts the draws made from it.
struct CountingRng {
    inner: ChaCha20Rng,
    draws: Arc<AtomicU64>,
}

impl RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.draws.fetch_add(1, Ordering::Relaxed);
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.draws.fetch_add(1, Ordering::Relaxed);
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.draws.fetch_add(1, Ordering::Relaxed);
        self.inner.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.draws.fetch_add(1, Ordering::Relaxed);
        self.inner.try_fill_bytes(dest)
    }
}

impl CryptoRng for CountingRng {}

struct Node {
    dev: Device,
    /// Draws made from `dev`'s RNG so far.
    draws: Arc<AtomicU64>,
    addr: SocketAddr,
    peer: PeerId,
    /// Inner packets delivered (payload sequence numbers).
    delivered: Vec<u32>,
}

struct Sim {
    t0: Instant,
    now: Instant,
    nodes: [Node; 2],
    paths: [Path; 2],
    flights: BinaryHeap<Reverse<Flight>>,
    seq: u64,
    rng: ChaCha20Rng,
    log: Vec<Sent>,
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes([seed; 32])
}

/// An IPv4 packet of `len` bytes carrying `id` in its payload.
fn ip_packet(id: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(24)];
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p[20..24].copy_from_slice(&id.to_be_bytes());
    p
}

impl Sim {
    fn new(seed: u64, keepalive: [u16; 2]) -> Sim {
        let t0 = origin();
        let addrs: [SocketAddr; 2] = ["192.0.2.1:51820".parse().unwrap(), "192.0.2.2:51820".parse().unwrap()];
        let mk = |i: usize| {
            let draws = Arc::new(AtomicU64::new(0));
            let rng = Box::new(CountingRng { inner: ChaCha20Rng::seed_from_u64(seed * 10 + i as u64), draws: Arc::clone(&draws) });
            let mut dev = Device::new(Some(key(i as u8 + 1)), rng, t0, UNIX_START);
            let mut cfg = PeerConfig::new(key(2 - i as u8).public_key());
            cfg.endpoint = Some(addrs[1 - i]);
            cfg.persistent_keepalive = keepalive[i];
            let peer = dev.add_peer(cfg).unwrap();
            Node { dev, draws, addr: addrs[i], peer, delivered: Vec::new() }
        };
        Sim {
            t0,
            now: t0,
            nodes: [mk(0), mk(1)],
            paths: [Path::default(); 2],
            flights: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            log: Vec::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Moves every queued transmit of node `i` onto the link.
    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].dev.poll_transmit() {
            self.log.push(Sent { at: self.elapsed(), from: i, kind: t.payload[0], len: t.payload.len() });
            let Some(to) = self.nodes.iter().position(|n| n.addr == t.destination) else { continue };
            let path = self.paths[i];
            if !path.up || self.rng_f64() < path.loss {
                continue;
            }
            let copies = if self.rng_f64() < path.duplicate { 2 } else { 1 };
            for _ in 0..copies {
                let jitter = if path.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(self.rng.next_u64() % path.jitter.as_nanos() as u64)
                };
                self.seq += 1;
                let f =
                    Flight { at: self.now + path.latency + jitter, seq: self.seq, to, from: self.nodes[i].addr, data: t.payload.clone() };
                self.flights.push(Reverse(f));
            }
        }
    }

    fn rng_f64(&mut self) -> f64 {
        (self.rng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
    }

    /// Node `i` sends an inner packet to its peer.
    fn send(&mut self, i: usize, id: u32, len: usize) {
        let (now, peer) = (self.now, self.nodes[i].peer);
        self.nodes[i].dev.send(now, peer, &ip_packet(id, len)).unwrap();
        self.flush(i);
    }

    /// Runs the network and the timers until `until` (time since the start).
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            let next_flight = self.flights.peek().map(|f| f.0.at);
            let next_timer = self.nodes.iter().filter_map(|n| n.dev.poll_timeout()).min();
            let next = [next_flight, next_timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    if next_flight == Some(t) {
                        let Reverse(f) = self.flights.pop().unwrap();
                        self.deliver(f);
                    } else {
                        for i in 0..2 {
                            self.nodes[i].dev.handle_timeout(self.now);
                            self.flush(i);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    fn deliver(&mut self, f: Flight) {
        let mut data = f.data;
        let node = &mut self.nodes[f.to];
        if let Ok(Received::Packet { range, .. }) = node.dev.handle_datagram(self.now, f.from, &mut data, &|_, _| true) {
            let p = &data[range];
            node.delivered.push(u32::from_be_bytes(p[20..24].try_into().unwrap()));
        }
        self.flush(f.to);
    }

    fn sent(&self, from: usize, kind: u8) -> Vec<Duration> {
        self.log.iter().filter(|s| s.from == from && s.kind == kind).map(|s| s.at).collect()
    }

    fn session_index(&self, i: usize) -> Option<u32> {
        self.nodes[i].dev.peer(self.nodes[i].peer).unwrap().current_session().map(|s| s.local_index)
    }

    fn drops(&self, i: usize, r: DropReason) -> u64 {
        self.nodes[i].dev.stats().drops(r)
    }
}

const INIT: u8 = 1;
const RESP: u8 = 2;
const COOKIE: u8 = 3;
const DATA: u8 = 4;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn handshake_and_data_over_a_bad_link() {
    let mut sim = Sim::new(1, [0, 0]);
    for p in &mut sim.paths {
        *p = Path { loss: 0.1, duplicate: 0.1, latency: Duration::from_millis(20), jitter: Duration::from_millis(120), up: true };
    }
    // Both sides talk for two minutes, one packet every 50 ms each.
    for k in 0..2400u32 {
        sim.send(0, k, 100 + (k as usize % 1300));
        sim.send(1, 100_000 + k, 60);
        sim.run_until(Duration::from_millis(50 * (k as u64 + 1)));
    }
    sim.run_until(secs(130.0));
    for (i, base) in [(1usize, 0u32), (0, 100_000)] {
        let got = &sim.nodes[i].delivered;
        let mut unique = got.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "a duplicated datagram was delivered twice");
        assert!(got.len() > 1800, "node {i} got only {} of 2400 packets", got.len());
        assert!(got.iter().all(|id| (base..base + 2400).contains(id)));
        // Reordering happened on the link and was passed through (the window accepts it).
        assert!(got.windows(2).any(|w| w[0] > w[1]));
    }
    assert!(sim.drops(0, DropReason::ReplayedCounter) + sim.drops(1, DropReason::ReplayedCounter) > 0);
    assert_eq!(sim.drops(1, DropReason::DecryptFailed), 0);
}

#[test]
fn retransmits_twenty_initiations_with_jitter_then_gives_up_and_zeroes() {
    let mut sim = Sim::new(2, [0, 0]);
    sim.paths[0].up = false; // nothing from A reaches B
    sim.send(0, 1, 100);
    sim.send(0, 2, 100);
    sim.run_until(secs(200.0));
    let inits = sim.sent(0, INIT);
    assert_eq!(inits.len(), 20, "initiations at {inits:?}");
    for w in inits.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= REKEY_TIMEOUT && gap < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX, "gap {gap:?}");
    }
    let gaps: Vec<Duration> = inits.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().any(|g| *g != gaps[0]), "jitter varies");
    // Both staged packets were purged when the handshake was abandoned.
    assert_eq!(sim.drops(0, DropReason::HandshakeAbandoned), 2);
    let info = sim.nodes[0].dev.peer_info(sim.nodes[0].peer, sim.now).unwrap();
    assert_eq!(info.staged_packets, 0);
    // The pending handshake's index is released when the key-zeroing timer fires (540 s after
    // giving up), and no timer is left.
    assert!(sim.nodes[0].dev.indices_in_use() > 0);
    sim.run_until(secs(100.0 + 540.0 + 10.0));
    assert_eq!(sim.nodes[0].dev.indices_in_use(), 0);
    assert_eq!(sim.nodes[0].dev.poll_timeout(), None);
    assert_eq!(sim.sent(0, INIT).len(), 20);
}

#[test]
fn rekey_after_120_seconds_by_the_initiator_only() {
    let mut sim = Sim::new(3, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    let first = sim.session_index(0).unwrap();
    // Steady traffic both ways, one packet a second each.
    for k in 1..200u32 {
        sim.send(0, k, 100);
        sim.send(1, 10_000 + k, 100);
        sim.run_until(secs(k as f64 + 1.0));
    }
    let a_inits = sim.sent(0, INIT);
    let b_inits = sim.sent(1, INIT);
    assert!(b_inits.is_empty(), "the responder never rekeys by age: {b_inits:?}");
    assert!(a_inits.len() >= 2);
    // The second initiation is the first send after the session turned 120 s old.
    let session_start = sim.log.iter().find(|s| s.from == 1 && s.kind == RESP).unwrap().at;
    let rekey = a_inits[1];
    assert!(rekey >= session_start + REKEY_AFTER_TIME && rekey < session_start + REKEY_AFTER_TIME + secs(1.01), "{rekey:?}");
    assert_ne!(sim.session_index(0), Some(first));
    assert_eq!(sim.nodes[1].delivered.len(), 200);
    assert_eq!(sim.nodes[0].delivered.len(), 199);
}

#[test]
fn reject_after_180_seconds_when_no_rekey_is_possible() {
    let mut sim = Sim::new(4, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    // From now on nothing from A arrives: no new session can be made.
    sim.paths[0].up = false;
    let start = sim.log.iter().find(|s| s.kind == RESP).unwrap().at;
    sim.run_until(secs(170.0));
    let (now, peer) = (sim.now, sim.nodes[0].peer);
    // Capture a data message sealed at 170 s to replay it after the session expired.
    sim.nodes[0].dev.send(now, peer, &ip_packet(7, 100)).unwrap();
    let late = sim.nodes[0].dev.poll_transmit().unwrap();
    assert_eq!(late.payload[0], DATA);
    sim.run_until(start + REJECT_AFTER_TIME + secs(1.0));
    let mut buf = late.payload.clone();
    let from = sim.nodes[0].addr;
    let r = sim.nodes[1].dev.handle_datagram(sim.now, from, &mut buf, &|_, _| true);
    assert_eq!(r, Err(DropReason::SessionExpired));
    // And A no longer seals with it: the packet is staged and a handshake is requested instead.
    sim.send(0, 8, 100);
    let after: Vec<&Sent> = sim.log.iter().filter(|s| s.from == 0 && s.at > start + REJECT_AFTER_TIME).collect();
    assert!(after.iter().all(|s| s.kind == INIT), "{after:?}");
    assert_eq!(sim.nodes[0].dev.peer_info(peer, sim.now).unwrap().staged_packets, 1);
}

#[test]
fn initiator_renews_at_165_seconds_on_receive() {
    let mut sim = Sim::new(5, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    let start = sim.log.iter().find(|s| s.kind == RESP).unwrap().at;
    // Silence, then the responder sends one packet when the session is 166 s old.
    sim.run_until(start + secs(166.0));
    let before = sim.sent(0, INIT).len();
    sim.send(1, 1, 100);
    sim.run_until(start + secs(166.0) + secs(0.05));
    let inits = sim.sent(0, INIT);
    assert_eq!(inits.len(), before + 1, "A initiates on receiving with a 165 s old session");
    assert!(inits[before] < start + secs(166.1));
    // The responder, receiving on an old session, does not initiate.
    assert!(sim.sent(1, INIT).is_empty());
}

#[test]
fn keepalive_ten_seconds_after_unanswered_data() {
    let mut sim = Sim::new(6, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(30.0));
    // B received data at about 0.03 s and sent nothing: exactly one keepalive 10 s later.
    let keepalives: Vec<&Sent> = sim.log.iter().filter(|s| s.from == 1 && s.kind == DATA && s.len == 32).collect();
    assert_eq!(keepalives.len(), 1, "{keepalives:?}");
    let data_arrival = secs(0.03); // initiation 10 ms, response 10 ms, data 10 ms
    assert_eq!(keepalives[0].at, data_arrival + KEEPALIVE_TIMEOUT);
    // When B answers with data in time, no keepalive is needed.
    sim.send(0, 1, 100);
    sim.run_until(secs(31.0));
    sim.send(1, 2, 100);
    sim.run_until(secs(60.0));
    let later = sim.log.iter().filter(|s| s.from == 1 && s.len == 32 && s.at > secs(30.0)).count();
    assert_eq!(later, 0);
}

#[test]
fn new_handshake_fifteen_seconds_after_unanswered_data() {
    let mut sim = Sim::new(7, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(10.0));
    sim.paths[1].up = false; // B's answers are lost
    sim.send(0, 1, 100);
    let sent_at = sim.elapsed();
    sim.run_until(secs(30.0));
    let inits = sim.sent(0, INIT);
    assert_eq!(inits.len(), 2, "{inits:?}");
    let wait = inits[1] - sent_at;
    assert!(wait >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT && wait < KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX, "{wait:?}");
}

#[test]
fn data_both_ways_draws_nothing_from_the_rng() {
    // A flow and its answers, like TCP data and ACKs: every packet received disarms the
    // new-handshake timer and the next one sent re-arms it with a fresh jitter. That jitter must
    // not come from the device's RNG (the OS RNG costs a system call per draw).
    let mut sim = Sim::new(12, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    assert_eq!(sim.nodes[1].delivered, vec![0], "no session after 1 s");
    let before: Vec<u64> = sim.nodes.iter().map(|n| n.draws.load(Ordering::Relaxed)).collect();
    for k in 1..=1000u32 {
        sim.send(0, k, 1200);
        sim.send(1, 100_000 + k, 60);
        sim.run_until(secs(1.0) + Duration::from_millis(5 * u64::from(k)));
    }
    sim.run_until(secs(7.0));
    assert_eq!(sim.nodes[1].delivered.len(), 1001);
    assert_eq!(sim.nodes[0].delivered.len(), 1000);
    let after: Vec<u64> = sim.nodes.iter().map(|n| n.draws.load(Ordering::Relaxed)).collect();
    assert_eq!(after, before, "draws from the device RNG during 2,000 data packets");
}

#[test]
fn persistent_keepalive_every_interval() {
    let mut sim = Sim::new(8, [0, 0]);
    // Turning it on at runtime sends a keepalive at once, which starts the handshake.
    let (now, peer) = (sim.now, sim.nodes[0].peer);
    sim.nodes[0].dev.set_persistent_keepalive(now, peer, 25).unwrap();
    sim.flush(0);
    sim.run_until(secs(100.0));
    let ka: Vec<Duration> = sim.log.iter().filter(|s| s.from == 0 && s.kind == DATA && s.len == 32).map(|s| s.at).collect();
    assert!(ka.len() >= 4, "{ka:?}");
    for w in ka[1..].windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(25), "{ka:?}");
    }
    // B never sends unprompted: its only messages are the response and nothing else.
    assert!(sim.log.iter().filter(|s| s.from == 1).all(|s| s.kind == RESP));
}

#[test]
fn keys_are_zeroed_540_seconds_after_the_last_session() {
    let mut sim = Sim::new(9, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    assert!(sim.session_index(0).is_some() && sim.session_index(1).is_some());
    sim.run_until(secs(539.0));
    assert!(!sim.nodes[0].dev.peer(sim.nodes[0].peer).unwrap().keypairs().is_empty());
    sim.run_until(secs(541.0));
    for i in 0..2 {
        assert!(sim.nodes[i].dev.peer(sim.nodes[i].peer).unwrap().keypairs().is_empty(), "node {i}");
        assert_eq!(sim.nodes[i].dev.indices_in_use(), 0);
    }
    // Traffic afterwards simply makes a new handshake.
    sim.send(0, 1, 100);
    sim.run_until(secs(542.0));
    assert_eq!(sim.nodes[1].delivered, vec![0, 1]);
}

#[test]
fn cookie_reply_under_load_then_mac2_is_accepted() {
    let mut sim = Sim::new(10, [0, 0]);
    sim.nodes[1].dev.set_handshake_backlog(1024, 1024);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    assert_eq!(sim.sent(1, COOKIE).len(), 1);
    assert!(sim.sent(1, RESP).is_empty());
    assert_eq!(sim.nodes[1].dev.stats().cookie_replies_sent, 1);
    // The retransmission 5 s later carries mac2 and gets through.
    sim.run_until(secs(7.0));
    assert_eq!(sim.sent(0, INIT).len(), 2);
    assert_eq!(sim.sent(1, RESP).len(), 1);
    assert_eq!(sim.nodes[1].delivered, vec![0]);
    // The cookie is used for at most 115 s: a later initiation without a fresh cookie is
    // answered with a cookie reply again.
    let (now, peer) = (sim.now, sim.nodes[0].peer);
    sim.run_until(secs(130.0));
    sim.nodes[0].dev.initiate_handshake(sim.now, peer).unwrap();
    let _ = now;
    sim.flush(0);
    sim.run_until(secs(131.0));
    assert_eq!(sim.sent(1, COOKIE).len(), 2);
}

#[test]
fn initiation_replay_and_flood_are_refused() {
    let mut sim = Sim::new(11, [0, 0]);
    let (now, peer) = (sim.now, sim.nodes[0].peer);
    sim.nodes[0].dev.initiate_handshake(now, peer).unwrap();
    let first = sim.nodes[0].dev.poll_transmit().unwrap();
    let from = sim.nodes[0].addr;
    let mut b = first.payload.clone();
    assert!(matches!(sim.nodes[1].dev.handle_datagram(now, from, &mut b, &|_, _| true), Ok(Received::Initiation(_))));
    // The same initiation again: its timestamp is not newer.
    let mut b = first.payload.clone();
    let later = now + secs(1.0);
    assert_eq!(sim.nodes[1].dev.handle_datagram(later, from, &mut b, &|_, _| true), Err(DropReason::ReplayedInitiation));
    // A fresh initiation 10 ms after the accepted one is a flood, at 20 ms it passes.
    let t = now + secs(6.0);
    sim.nodes[0].dev.initiate_handshake(t, peer).unwrap();
    let second = sim.nodes[0].dev.poll_transmit().unwrap();
    let mut b = second.payload.clone();
    assert!(sim.nodes[1].dev.handle_datagram(t, from, &mut b, &|_, _| true).is_ok());
    let t2 = t + secs(5.0);
    sim.nodes[0].dev.initiate_handshake(t2, peer).unwrap();
    let third = sim.nodes[0].dev.poll_transmit().unwrap();
    let mut b = third.payload.clone();
    // Pretend it arrived right after the second (its timestamp is newer).
    assert_eq!(sim.nodes[1].dev.handle_datagram(t + secs(0.01), from, &mut b, &|_, _| true), Err(DropReason::InitiationFlood));
    let mut b = third.payload.clone();
    assert!(sim.nodes[1].dev.handle_datagram(t + INITIATION_MIN_INTERVAL, from, &mut b, &|_, _| true).is_ok());
    // The responder's persisted greatest timestamp is that of the third initiation.
    let info = sim.nodes[1].dev.peer_info(sim.nodes[1].peer, t2).unwrap();
    assert!(info.latest_timestamp > Tai64N::ZERO);
}

#[test]
fn persisted_timestamp_blocks_replay_after_restart() {
    let mut sim = Sim::new(12, [0, 0]);
    let (now, peer) = (sim.now, sim.nodes[0].peer);
    sim.nodes[0].dev.initiate_handshake(now, peer).unwrap();
    let init = sim.nodes[0].dev.poll_transmit().unwrap();
    let from = sim.nodes[0].addr;
    let mut b = init.payload.clone();
    sim.nodes[1].dev.handle_datagram(now, from, &mut b, &|_, _| true).unwrap();
    let saved = sim.nodes[1].dev.peer_info(sim.nodes[1].peer, now).unwrap().latest_timestamp;
    // "Restart" B with the saved timestamp: the captured initiation is refused.
    let mut dev = Device::new(Some(key(2)), Box::new(ChaCha20Rng::seed_from_u64(99)), now, UNIX_START);
    let mut cfg = PeerConfig::new(key(1).public_key());
    cfg.latest_timestamp = saved;
    dev.add_peer(cfg).unwrap();
    let mut b = init.payload.clone();
    assert_eq!(dev.handle_datagram(now + secs(60.0), from, &mut b, &|_, _| true), Err(DropReason::ReplayedInitiation));
    assert!(dev.poll_transmit().is_none());
}

#[test]
fn simultaneous_initiation_converges() {
    let mut sim = Sim::new(13, [0, 0]);
    sim.send(0, 0, 100);
    sim.send(1, 1, 100);
    sim.run_until(secs(20.0));
    assert_eq!(sim.nodes[1].delivered, vec![0]);
    assert_eq!(sim.nodes[0].delivered, vec![1]);
    for k in 2..10 {
        sim.send(0, k, 100);
        sim.send(1, 100 + k, 100);
    }
    sim.run_until(secs(21.0));
    assert_eq!(sim.nodes[1].delivered.len(), 9);
    assert_eq!(sim.nodes[0].delivered.len(), 9);
}

#[test]
fn roaming_follows_the_authenticated_source() {
    let mut sim = Sim::new(14, [0, 0]);
    sim.send(0, 0, 100);
    sim.run_until(secs(1.0));
    let new_addr: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    sim.nodes[1].addr = new_addr;
    sim.send(1, 1, 100);
    sim.run_until(secs(2.0));
    let info = sim.nodes[0].dev.peer_info(sim.nodes[0].peer, sim.now).unwrap();
    assert_eq!(info.endpoint, Some(new_addr));
    sim.send(0, 2, 100);
    sim.run_until(secs(3.0));
    assert_eq!(sim.nodes[1].delivered, vec![0, 2]);
    // A forged datagram from elsewhere does not move the endpoint.
    let mut junk = vec![4u8, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    junk.resize(64, 0);
    let _ = sim.nodes[0].dev.handle_datagram(sim.now, "203.0.113.9:1".parse().unwrap(), &mut junk, &|_, _| true);
    assert_eq!(sim.nodes[0].dev.peer_info(sim.nodes[0].peer, sim.now).unwrap().endpoint, Some(new_addr));
}

#[test]
fn byte_counters_match_the_kernel_selftest() {
    // Ten 84-byte pings from the initiator: tx 148 + 10 × 128, rx 92 + 10 × 128 on its side.
    let mut sim = Sim::new(15, [0, 0]);
    for k in 0..10 {
        sim.send(0, k, 84);
        sim.run_until(secs(0.1 * (k as f64 + 1.0)));
        sim.send(1, 100 + k, 84);
        sim.run_until(secs(0.1 * (k as f64 + 1.0) + 0.05));
    }
    let a = sim.nodes[0].dev.peer_info(sim.nodes[0].peer, sim.now).unwrap();
    assert_eq!((a.tx_bytes, a.rx_bytes), (1428, 1372));
    let b = sim.nodes[1].dev.peer_info(sim.nodes[1].peer, sim.now).unwrap();
    assert_eq!((b.tx_bytes, b.rx_bytes), (1372, 1428));
    assert!(a.last_handshake.unwrap() >= UNIX_START);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut sim = Sim::new(16, [0, 0]);
        for p in &mut sim.paths {
            *p = Path { loss: 0.2, duplicate: 0.2, latency: Duration::from_millis(5), jitter: Duration::from_millis(20), up: true };
        }
        for k in 0..300u32 {
            sim.send(k as usize % 2, k, 200);
            sim.run_until(Duration::from_millis(100 * (k as u64 + 1)));
        }
        (sim.log, sim.nodes[0].delivered.clone(), sim.nodes[1].delivered.clone())
    };
    assert_eq!(run(), run());
}

#[test]
fn events_mirror_the_sessions_exactly() {
    use std::collections::HashMap;
    use vpn_tunnel::Event;
    let mut sim = Sim::new(17, [0, 0]);
    for n in &mut sim.nodes {
        n.dev.enable_events();
    }
    for p in &mut sim.paths {
        *p = Path { loss: 0.05, duplicate: 0.05, latency: Duration::from_millis(5), jitter: Duration::from_millis(10), up: true };
    }
    let mut mirrors: [HashMap<u32, u32>; 2] = [HashMap::new(), HashMap::new()];
    let mut sending: [Option<u32>; 2] = [None, None];
    // Long enough for several rekeys and, after the traffic stops, key zeroing.
    for k in 0..650u32 {
        if k < 300 {
            sim.send(k as usize % 2, k, 100);
        }
        sim.run_until(Duration::from_secs(2 * (k as u64 + 1)));
        for (i, mirror) in mirrors.iter_mut().enumerate() {
            let dev = &mut sim.nodes[i].dev;
            while let Some(e) = dev.poll_event() {
                match e {
                    Event::SessionAdded { session, .. } => {
                        assert!(mirror.insert(session.local_index, session.remote_index).is_none());
                    }
                    Event::SessionRemoved { local_index } => {
                        assert!(mirror.remove(&local_index).is_some(), "removed an index never added");
                    }
                    Event::PeerChanged(id) => sending[i] = dev.current_sending(id).map(|(s, _)| s.local_index),
                    _ => {}
                }
            }
            let peer = dev.peer(sim.nodes[i].peer).unwrap();
            let mut live: Vec<u32> = [&peer.keypairs().previous, &peer.keypairs().current, &peer.keypairs().next]
                .into_iter()
                .flatten()
                .map(|s| s.local_index)
                .collect();
            let mut mirrored: Vec<u32> = mirror.keys().copied().collect();
            live.sort_unstable();
            mirrored.sort_unstable();
            assert_eq!(live, mirrored, "node {i} at step {k}");
            assert_eq!(sending[i], peer.current_session().map(|s| s.local_index), "node {i} at step {k}");
        }
    }
    assert!(mirrors.iter().all(|m| m.is_empty()), "keys zeroed at the end");
}

#[test]
fn split_initiation_path_matches_handle_datagram() {
    use vpn_tunnel::noise::begin_consume_initiation;
    use vpn_tunnel::wire::Message;
    let mut sim = Sim::new(18, [0, 0]);
    let (now, peer) = (sim.now, sim.nodes[0].peer);
    sim.nodes[0].dev.initiate_handshake(now, peer).unwrap();
    let init = sim.nodes[0].dev.poll_transmit().unwrap().payload;
    let from = sim.nodes[0].addr;
    let b = &mut sim.nodes[1].dev;
    // A datagram that is not an initiation with a valid mac1 stops at the precheck, counted.
    let mut bad = init.clone();
    bad[120] ^= 1;
    assert_eq!(b.precheck_handshake(now, from, &bad), Err(DropReason::InvalidMac1));
    assert_eq!(b.stats().drops(DropReason::InvalidMac1), 1);
    // The genuine one: precheck, the first DH with the shared identity, then the rest.
    assert_eq!(b.precheck_handshake(now, from, &init), Ok(None));
    let identity = b.identity().unwrap();
    let Ok(Message::Initiation(m)) = Message::parse(&init) else { panic!("initiation") };
    let stage1 = begin_consume_initiation(&identity, &m).unwrap();
    assert!(matches!(b.handle_initiation_stage1(now, from, stage1), Ok(Received::Initiation(_))));
    // The same initiation again is a replay, counted once.
    let stage1 = begin_consume_initiation(&identity, &m).unwrap();
    assert_eq!(b.handle_initiation_stage1(now + secs(1.0), from, stage1), Err(DropReason::ReplayedInitiation));
    assert_eq!(b.stats().drops(DropReason::ReplayedInitiation), 1);
    // The response completes the handshake and data flows.
    sim.flush(1);
    sim.run_until(secs(1.0));
    sim.send(0, 5, 100);
    sim.run_until(secs(2.0));
    assert_eq!(sim.nodes[1].delivered, vec![5]);
}
