//! Server key rotation with a grace period, on a virtual clock: a server with a new private key
//! and the old one as its retiring identity, a client that still has the old server public key
//! and one that has the new one. Every datagram goes over a simulated link (10 ms, no loss), so
//! each test checks the protocol end to end, and what the server counted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vpn_crypto::PrivateKey;
use vpn_tunnel::constants::{REJECT_AFTER_TIME, REKEY_TIMEOUT};
use vpn_tunnel::noise::begin_consume_initiation;
use vpn_tunnel::wire::Message;
use vpn_tunnel::{Device, DropReason, PeerConfig, PeerId, Received};

#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

const UNIX_START: Duration = Duration::from_secs(1_700_000_000);
const LATENCY: Duration = Duration::from_millis(10);

const INIT: u8 = 1;
const RESP: u8 = 2;
const COOKIE: u8 = 3;

/// Node indices.
const SERVER: usize = 0;
const OLD: usize = 1;
const NEW: usize = 2;

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes([seed; 32])
}

/// The server's key before and after the rotation.
fn server_old() -> PrivateKey {
    key(10)
}
fn server_new() -> PrivateKey {
    key(11)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// An IPv4 packet carrying `id`.
fn ip_packet(id: u32) -> Vec<u8> {
    let mut p = vec![0u8; 100];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&100u16.to_be_bytes());
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p[20..24].copy_from_slice(&id.to_be_bytes());
    p
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    seq: u64,
    to: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

/// What went over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    at: Duration,
    from: usize,
    to: usize,
    kind: u8,
}

struct Node {
    dev: Device,
    addr: SocketAddr,
    /// Inner packets delivered: (from peer, id).
    delivered: Vec<(PeerId, u32)>,
}

/// A server and two clients: `OLD` knows the server's old public key, `NEW` the new one.
struct Net {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    /// The server's peer id of each client (indexed by node), and each client's id of the server.
    server_peer: [PeerId; 3],
    client_peer: [PeerId; 3],
    flights: BinaryHeap<Reverse<Flight>>,
    seq: u64,
    log: Vec<Sent>,
}

impl Net {
    /// The server starts with `primary` (and `retiring`); the clients are configured with the
    /// server's old and new public keys.
    fn new(seed: u64, primary: PrivateKey, retiring: Option<PrivateKey>) -> Net {
        let t0 = origin();
        let addrs: [SocketAddr; 3] =
            ["192.0.2.1:51820".parse().unwrap(), "198.51.100.1:40001".parse().unwrap(), "198.51.100.2:40002".parse().unwrap()];
        let rng = |i: u64| Box::new(ChaCha20Rng::seed_from_u64(seed * 10 + i));
        let mut server = Device::new(Some(primary), rng(0), t0, UNIX_START);
        server.set_retiring_private_key(retiring);
        let mut server_peer = [PeerId(u64::MAX); 3];
        let mut client_peer = [PeerId(u64::MAX); 3];
        let mut nodes = vec![Node { dev: server, addr: addrs[0], delivered: Vec::new() }];
        for (i, server_public) in [(OLD, server_old().public_key()), (NEW, server_new().public_key())] {
            let client_key = key(i as u8);
            // The server knows the clients' keys but not their addresses (they roam in).
            server_peer[i] = nodes[SERVER].dev.add_peer(PeerConfig::new(client_key.public_key())).unwrap();
            let mut dev = Device::new(Some(client_key), rng(i as u64), t0, UNIX_START);
            let mut cfg = PeerConfig::new(server_public);
            cfg.endpoint = Some(addrs[SERVER]);
            client_peer[i] = dev.add_peer(cfg).unwrap();
            nodes.push(Node { dev, addr: addrs[i], delivered: Vec::new() });
        }
        Net { t0, now: t0, nodes, server_peer, client_peer, flights: BinaryHeap::new(), seq: 0, log: Vec::new() }
    }

    fn server(&mut self) -> &mut Device {
        &mut self.nodes[SERVER].dev
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].dev.poll_transmit() {
            let Some(to) = self.nodes.iter().position(|n| n.addr == t.destination) else { continue };
            self.log.push(Sent { at: self.elapsed(), from: i, to, kind: t.payload[0] });
            self.seq += 1;
            let f = Flight { at: self.now + LATENCY, seq: self.seq, to, from: self.nodes[i].addr, data: t.payload };
            self.flights.push(Reverse(f));
        }
    }

    /// Client `i` sends a packet to the server.
    fn client_sends(&mut self, i: usize, id: u32) {
        let (now, peer) = (self.now, self.client_peer[i]);
        self.nodes[i].dev.send(now, peer, &ip_packet(id)).unwrap();
        self.flush(i);
    }

    /// The server sends a packet to client `i`.
    fn server_sends(&mut self, i: usize, id: u32) {
        let (now, peer) = (self.now, self.server_peer[i]);
        self.server().send(now, peer, &ip_packet(id)).unwrap();
        self.flush(SERVER);
    }

    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            let next_flight = self.flights.peek().map(|f| f.0.at);
            let next_timer = self.nodes.iter().filter_map(|n| n.dev.poll_timeout()).min();
            match [next_flight, next_timer].into_iter().flatten().min() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    if next_flight == Some(t) {
                        let Reverse(f) = self.flights.pop().unwrap();
                        let mut data = f.data;
                        let node = &mut self.nodes[f.to];
                        if let Ok(Received::Packet { peer, range }) = node.dev.handle_datagram(self.now, f.from, &mut data, &|_, _| true) {
                            node.delivered.push((peer, u32::from_be_bytes(data[range][20..24].try_into().unwrap())));
                        }
                        self.flush(f.to);
                    } else {
                        for i in 0..self.nodes.len() {
                            let now = self.now;
                            self.nodes[i].dev.handle_timeout(now);
                            self.flush(i);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// Ids delivered at node `i`.
    fn delivered(&self, i: usize) -> Vec<u32> {
        self.nodes[i].delivered.iter().map(|(_, id)| *id).collect()
    }

    /// Ids the server delivered from client `i`.
    fn server_got_from(&self, i: usize) -> Vec<u32> {
        self.nodes[SERVER].delivered.iter().filter(|(p, _)| *p == self.server_peer[i]).map(|(_, id)| *id).collect()
    }

    fn count(&self, from: usize, to: usize, kind: u8) -> usize {
        self.log.iter().filter(|s| s.from == from && s.to == to && s.kind == kind).count()
    }

    fn drops(&self, i: usize, r: DropReason) -> u64 {
        self.nodes[i].dev.stats().drops(r)
    }

    fn server_uses_retiring(&self, i: usize) -> bool {
        self.nodes[SERVER].dev.peer(self.server_peer[i]).unwrap().uses_retiring_identity()
    }

    fn server_has_session(&self, i: usize) -> bool {
        !self.nodes[SERVER].dev.peer(self.server_peer[i]).unwrap().keypairs().is_empty()
    }
}

/// Both clients reach the server after it rotated: with new primary + retiring old.
fn both_connected(seed: u64) -> Net {
    let mut net = Net::new(seed, server_new(), Some(server_old()));
    net.client_sends(OLD, 1);
    net.client_sends(NEW, 2);
    net.run_until(secs(1.0));
    net.server_sends(OLD, 11);
    net.server_sends(NEW, 12);
    net.run_until(secs(2.0));
    net
}

#[test]
fn old_and_new_key_clients_both_handshake_during_the_grace_period() {
    let net = both_connected(1);
    assert_eq!(net.server_got_from(OLD), vec![1]);
    assert_eq!(net.server_got_from(NEW), vec![2]);
    assert_eq!(net.delivered(OLD), vec![11]);
    assert_eq!(net.delivered(NEW), vec![12]);
    // One handshake each, initiated by the clients.
    for i in [OLD, NEW] {
        assert_eq!(net.count(i, SERVER, INIT), 1, "client {i}");
        assert_eq!(net.count(SERVER, i, RESP), 1, "client {i}");
        assert_eq!(net.count(SERVER, i, INIT), 0, "client {i}");
    }
    assert!(net.server_uses_retiring(OLD));
    assert!(!net.server_uses_retiring(NEW));
    assert_eq!(net.drops(SERVER, DropReason::InvalidMac1), 0);
    assert_eq!(net.drops(SERVER, DropReason::HandshakeFailed), 0);
    let dev = &net.nodes[SERVER].dev;
    assert_eq!(dev.public_key(), Some(server_new().public_key()));
    assert_eq!(dev.retiring_public_key(), Some(server_old().public_key()));
    assert_eq!(dev.retiring_private_key(), Some(&server_old()));
    let shown = format!("{dev:?}");
    assert!(shown.contains("retiring_public_key"), "{shown}");
}

#[test]
fn without_a_retiring_key_an_old_key_client_is_refused() {
    let mut net = Net::new(2, server_new(), None);
    net.client_sends(OLD, 1);
    net.client_sends(NEW, 2);
    net.run_until(secs(1.0));
    assert_eq!(net.server_got_from(OLD), Vec::<u32>::new());
    assert_eq!(net.server_got_from(NEW), vec![2]);
    // Nothing answers a message whose mac1 is for a key the server does not have.
    assert_eq!(net.count(SERVER, OLD, RESP) + net.count(SERVER, OLD, COOKIE), 0);
    assert_eq!(net.drops(SERVER, DropReason::InvalidMac1), 1);
}

#[test]
fn clearing_the_retiring_key_drops_old_key_initiations_and_sessions() {
    let mut net = both_connected(3);
    assert!(net.server_has_session(OLD) && net.server_has_session(NEW));
    net.server().set_retiring_private_key(None);
    assert_eq!(net.nodes[SERVER].dev.retiring_public_key(), None);
    // The sessions made with the retiring key are gone, the others stay.
    assert!(!net.server_has_session(OLD));
    assert!(net.server_has_session(NEW));
    assert!(!net.server_uses_retiring(OLD));
    // The new-key client keeps talking on its session, without a new handshake.
    net.client_sends(NEW, 3);
    net.run_until(secs(3.0));
    assert_eq!(net.server_got_from(NEW), vec![2, 3]);
    assert_eq!(net.count(NEW, SERVER, INIT), 1);
    // An initiation from the old-key client is dropped and counted as an invalid mac1, with
    // nothing sent back.
    net.run_until(secs(3.0) + REKEY_TIMEOUT);
    let (now, peer) = (net.now, net.client_peer[OLD]);
    net.nodes[OLD].dev.initiate_handshake(now, peer).unwrap();
    let init = net.nodes[OLD].dev.poll_transmit().unwrap();
    assert_eq!(init.payload[0], INIT);
    let before = net.drops(SERVER, DropReason::InvalidMac1);
    let from = net.nodes[OLD].addr;
    let mut b = init.payload.clone();
    assert_eq!(net.server().handle_datagram(now, from, &mut b, &|_, _| true), Err(DropReason::InvalidMac1));
    assert_eq!(net.drops(SERVER, DropReason::InvalidMac1), before + 1);
    assert!(net.server().poll_transmit().is_none());
    // The split path of a multithreaded driver refuses it the same way.
    assert_eq!(net.server().precheck_handshake(now, from, &init.payload), Err(DropReason::InvalidMac1));
    assert!(net.nodes[SERVER].dev.handshake_identity(&init.payload).is_some(), "without a retiring key: the primary, unchecked");
    // And over the link, retransmissions included, nothing gets through.
    net.client_sends(OLD, 4);
    net.run_until(secs(70.0));
    assert_eq!(net.server_got_from(OLD), vec![1]);
    assert_eq!(net.count(SERVER, OLD, RESP), 1);
}

#[test]
fn server_initiated_rekey_uses_the_old_identity_for_an_old_key_client() {
    let mut net = both_connected(4);
    // An explicit handshake from the server, once REKEY_TIMEOUT has passed since its response.
    net.run_until(secs(10.0));
    let (now, peer) = (net.now, net.server_peer[OLD]);
    net.server().initiate_handshake(now, peer).unwrap();
    net.flush(SERVER);
    net.run_until(secs(11.0));
    assert_eq!(net.count(SERVER, OLD, INIT), 1);
    // The client accepted it (it only knows the old key) and answered.
    assert_eq!(net.count(OLD, SERVER, RESP), 1);
    assert_eq!(net.nodes[OLD].dev.stats().drops(DropReason::UnknownPeer), 0);
    assert_eq!(net.nodes[OLD].dev.stats().drops(DropReason::InvalidMac1), 0);
    let session = net.nodes[SERVER].dev.peer(peer).unwrap().current_session().unwrap().clone();
    assert!(session.initiator, "the server's own handshake completed");
    net.server_sends(OLD, 21);
    net.run_until(secs(12.0));
    assert_eq!(net.delivered(OLD), vec![11, 21]);
    assert!(net.server_uses_retiring(OLD));

    // Data waiting after every session expired: the server initiates, as the old identity again.
    net.run_until(secs(12.0) + REJECT_AFTER_TIME + secs(5.0));
    let inits = net.count(SERVER, OLD, INIT);
    net.server_sends(OLD, 22);
    net.run_until(secs(12.0) + REJECT_AFTER_TIME + secs(6.0));
    assert_eq!(net.count(SERVER, OLD, INIT), inits + 1);
    assert_eq!(net.delivered(OLD), vec![11, 21, 22]);
    // The new-key client is still served with the new identity.
    net.server_sends(NEW, 23);
    net.run_until(secs(12.0) + REJECT_AFTER_TIME + secs(7.0));
    assert_eq!(net.delivered(NEW), vec![12, 23]);
    assert_eq!(net.drops(SERVER, DropReason::HandshakeFailed), 0);
    for i in [OLD, NEW] {
        assert_eq!(net.nodes[i].dev.stats().drops(DropReason::UnknownPeer), 0, "client {i}");
    }
}

#[test]
fn cookies_under_load_work_for_both_identities() {
    let mut net = Net::new(5, server_new(), Some(server_old()));
    net.server().set_handshake_backlog(1024, 1024);
    net.client_sends(OLD, 1);
    net.client_sends(NEW, 2);
    net.run_until(secs(1.0));
    // Under load, each first initiation gets a cookie reply, encrypted under the key of the
    // identity it was addressed to: each client takes it.
    for i in [OLD, NEW] {
        assert_eq!(net.count(SERVER, i, COOKIE), 1, "client {i}");
        assert_eq!(net.count(SERVER, i, RESP), 0, "client {i}");
        assert_eq!(net.nodes[i].dev.stats().drops(DropReason::InvalidCookieReply), 0, "client {i}");
    }
    assert_eq!(net.nodes[SERVER].dev.stats().cookie_replies_sent, 2);
    // The retransmissions carry mac2 and get through.
    net.run_until(secs(7.0));
    for i in [OLD, NEW] {
        assert_eq!(net.count(i, SERVER, INIT), 2, "client {i}");
        assert_eq!(net.count(SERVER, i, RESP), 1, "client {i}");
    }
    assert_eq!(net.server_got_from(OLD), vec![1]);
    assert_eq!(net.server_got_from(NEW), vec![2]);
    assert_eq!(net.nodes[SERVER].dev.stats().cookie_replies_sent, 2);
    assert!(net.server_uses_retiring(OLD));
}

#[test]
fn rotation_keeps_sessions_and_the_old_identity_until_the_client_moves() {
    // Before the rotation, the server has only the old key.
    let mut net = Net::new(6, server_old(), None);
    net.client_sends(OLD, 1);
    net.run_until(secs(1.0));
    assert_eq!(net.server_got_from(OLD), vec![1]);
    net.server().enable_events();
    // Rotate: new primary, old retiring. The old-key session is untouched.
    net.server().set_private_keys(Some(server_new()), Some(server_old()));
    assert!(net.server().poll_event().is_none(), "no session was added or removed");
    assert!(net.server_has_session(OLD));
    assert!(net.server_uses_retiring(OLD));
    net.client_sends(OLD, 2);
    net.server_sends(OLD, 3);
    net.run_until(secs(2.0));
    assert_eq!(net.server_got_from(OLD), vec![1, 2]);
    assert_eq!(net.delivered(OLD), vec![3]);
    assert_eq!(net.count(OLD, SERVER, INIT), 1);
    // Handshakes the server initiates use the old identity, which this client knows.
    net.run_until(secs(10.0));
    let (now, peer) = (net.now, net.server_peer[OLD]);
    net.server().initiate_handshake(now, peer).unwrap();
    net.flush(SERVER);
    net.run_until(secs(11.0));
    assert_eq!(net.count(OLD, SERVER, RESP), 1);
    assert!(net.nodes[SERVER].dev.peer(peer).unwrap().current_session().unwrap().initiator);

    // The client moves to the new key: its next initiation goes to the new identity, and from
    // then on so do the server's.
    let client = key(OLD as u8);
    let mut moved = Device::new(Some(client), Box::new(ChaCha20Rng::seed_from_u64(66)), net.now, UNIX_START + net.elapsed());
    let mut cfg = PeerConfig::new(server_new().public_key());
    cfg.endpoint = Some(net.nodes[SERVER].addr);
    net.client_peer[OLD] = moved.add_peer(cfg).unwrap();
    net.nodes[OLD].dev = moved;
    net.nodes[OLD].delivered.clear();
    net.client_sends(OLD, 4);
    net.run_until(secs(12.0));
    assert_eq!(net.server_got_from(OLD), vec![1, 2, 4]);
    assert!(!net.server_uses_retiring(OLD));
    net.run_until(secs(20.0));
    let (now, peer) = (net.now, net.server_peer[OLD]);
    net.server().initiate_handshake(now, peer).unwrap();
    net.flush(SERVER);
    net.run_until(secs(21.0));
    net.server_sends(OLD, 5);
    net.run_until(secs(22.0));
    assert_eq!(net.delivered(OLD), vec![5]);
    assert_eq!(net.nodes[OLD].dev.stats().drops(DropReason::UnknownPeer), 0);

    // Setting the same keys again changes nothing; ending the grace period now leaves this
    // client's sessions alone, since they were made with the new key.
    net.server().set_private_keys(Some(server_new()), Some(server_old()));
    net.server().set_retiring_private_key(None);
    assert!(net.server_has_session(OLD));
}

#[test]
fn changing_the_private_key_without_grace_destroys_every_session() {
    let mut net = both_connected(7);
    net.server().set_private_key(Some(key(12)));
    // The retiring key stays (set_private_key keeps it): old-key sessions survive.
    assert!(net.server_has_session(OLD));
    assert!(!net.server_has_session(NEW));
    net.server().set_private_keys(Some(key(12)), None);
    assert!(!net.server_has_session(OLD));
    assert!(!net.server_uses_retiring(OLD));
    // A retiring key equal to the primary one is no second identity.
    net.server().set_private_keys(Some(key(12)), Some(key(12)));
    assert_eq!(net.nodes[SERVER].dev.retiring_public_key(), None);
    // Promoting the retiring key back to primary keeps the sessions made with it.
    let mut net = both_connected(8);
    net.server().set_private_key(Some(server_old()));
    assert_eq!(net.nodes[SERVER].dev.retiring_public_key(), None);
    assert!(net.server_has_session(OLD));
    assert!(!net.server_uses_retiring(OLD));
    assert!(!net.server_has_session(NEW));
    net.client_sends(OLD, 5);
    net.run_until(secs(3.0));
    assert_eq!(net.server_got_from(OLD), vec![1, 5]);
}

#[test]
fn split_initiation_path_picks_the_addressed_identity() {
    let mut net = Net::new(9, server_new(), Some(server_old()));
    for (i, expected) in [(OLD, server_old().public_key()), (NEW, server_new().public_key())] {
        let (now, peer) = (net.now, net.client_peer[i]);
        net.nodes[i].dev.initiate_handshake(now, peer).unwrap();
        let init = net.nodes[i].dev.poll_transmit().unwrap().payload;
        let from = net.nodes[i].addr;
        let server = net.server();
        assert_eq!(server.precheck_handshake(now, from, &init), Ok(None));
        let identity = server.handshake_identity(&init).unwrap();
        assert_eq!(*identity.public_key(), expected, "client {i}");
        let Ok(Message::Initiation(m)) = Message::parse(&init) else { panic!("initiation") };
        let stage1 = begin_consume_initiation(&identity, &m).unwrap();
        assert_eq!(stage1.responder(), &expected);
        assert!(matches!(server.handle_initiation_stage1(now, from, stage1), Ok(Received::Initiation(_))));
        net.flush(SERVER);
    }
    net.run_until(secs(1.0));
    assert!(net.server_uses_retiring(OLD) && !net.server_uses_retiring(NEW));
    // A stage 1 made with an identity the server dropped meanwhile is refused.
    net.run_until(secs(1.0) + REKEY_TIMEOUT);
    let (now, peer) = (net.now, net.client_peer[OLD]);
    net.nodes[OLD].dev.initiate_handshake(now, peer).unwrap();
    let init = net.nodes[OLD].dev.poll_transmit().unwrap().payload;
    let identity = net.server().handshake_identity(&init).unwrap();
    let Ok(Message::Initiation(m)) = Message::parse(&init) else { panic!("initiation") };
    let stage1 = begin_consume_initiation(&identity, &m).unwrap();
    net.server().set_retiring_private_key(None);
    let from = net.nodes[OLD].addr;
    assert_eq!(net.server().handle_initiation_stage1(now, from, stage1), Err(DropReason::HandshakeFailed));
    // Junk that matches neither identity has none.
    let mut junk = init.clone();
    junk[120] ^= 1;
    net.server().set_retiring_private_key(Some(server_old()));
    assert!(net.nodes[SERVER].dev.handshake_identity(&junk).is_none());
    assert!(net.nodes[SERVER].dev.retiring_mac1_key().is_some());
}
