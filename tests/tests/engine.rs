//! Two engines in one process over in-memory TUN and UDP: handshake, data both ways, roaming,
//! peer removal under traffic, allowed-IPs filtering.

use std::time::Duration;

use vpn_dataplane::memory::MemoryNetwork;
use vpn_dataplane::EngineOptions;
use vpn_tests::{deliver, ipv4, Node};

const T: Duration = Duration::from_secs(10);

fn pair() -> (std::sync::Arc<MemoryNetwork>, Node, Node) {
    let net = MemoryNetwork::new();
    let a = Node::start(&net, "192.0.2.1", 1, "10.9.0.1");
    let b = Node::start(&net, "192.0.2.2", 2, "10.9.0.2");
    a.peer_with(&b, true);
    b.peer_with(&a, false);
    (net, a, b)
}

#[test]
fn handshake_and_data_both_ways() {
    let (_net, a, b) = pair();
    for k in 0..50 {
        let p = ipv4(a.tunnel_ip, b.tunnel_ip, k, 64 + k as usize * 20);
        assert!(deliver(&a, &b, &p, T), "A→B packet {k}");
        let q = ipv4(b.tunnel_ip, a.tunnel_ip, 1000 + k, 100);
        assert!(deliver(&b, &a, &q, T), "B→A packet {k}");
    }
    let sa = a.engine.status();
    let sb = b.engine.status();
    assert_eq!(sa.peers.len(), 1);
    let (pa, pb) = (&sa.peers[0], &sb.peers[0]);
    assert!(pa.last_handshake.is_some() && pb.last_handshake.is_some());
    // Every byte one side sent, the other received: the counters agree across the link.
    assert!(pa.tx_bytes > 0 && pa.rx_bytes > 0);
    assert_eq!(pb.endpoint, Some(a.endpoint()), "B learnt A's endpoint from the handshake");
}

/// A burst read and sent in batches (sealed and opened on crypto pools of two threads) arrives
/// whole and in order, and the byte counters of both sides agree to the byte.
#[test]
fn batched_burst_arrives_in_order_with_exact_counters() {
    let net = MemoryNetwork::new();
    let options = EngineOptions { crypto_threads: Some(2) };
    let a = Node::start_with(&net, "192.0.2.1", 1, "10.9.0.1", options);
    let b = Node::start_with(&net, "192.0.2.2", 2, "10.9.0.2", options);
    a.peer_with(&b, true);
    b.peer_with(&a, false);
    assert_eq!(a.engine.crypto_threads(), 2);
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 0, 100), T));
    let (tx0, rx0) = (a.engine.status().peers[0].tx_bytes, b.engine.status().peers[0].rx_bytes);
    const N: u32 = 3000;
    let mut expected_bytes = 0u64;
    for id in 1..=N {
        // Sizes vary so that batches mix GSO groups of several lengths.
        let len = 60 + (id as usize * 37) % 1360;
        // Padded to 16 bytes but never past the MTU, plus header and tag.
        expected_bytes += (32 + (len.div_ceil(16) * 16).min(1420)) as u64;
        a.tun.inject(ipv4(a.tunnel_ip, b.tunnel_ip, id, len));
    }
    let mut next = 1;
    while next <= N {
        let Some(p) = b.receive(T) else { panic!("packet {next} of {N} never arrived") };
        let id = u32::from_be_bytes([p[24], p[25], p[26], p[27]]);
        assert_eq!(id, next, "packets arrive in the order they were sent");
        next += 1;
    }
    // Counters are updated before delivery, so they are final now.
    let (tx1, rx1) = (a.engine.status().peers[0].tx_bytes, b.engine.status().peers[0].rx_bytes);
    assert_eq!(tx1 - tx0, expected_bytes, "sender counts every message it sent");
    assert_eq!(rx1 - rx0, expected_bytes, "receiver counts every message it opened");
}

#[test]
fn roaming_client_keeps_talking() {
    let (_net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    a.host.move_to("198.51.100.9".parse().unwrap());
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 2, 100), T));
    assert_eq!(b.engine.status().peers[0].endpoint, Some(a.endpoint()));
    // B's answers follow A to its new address.
    assert!(deliver(&b, &a, &ipv4(b.tunnel_ip, a.tunnel_ip, 3, 100), T));
}

#[test]
fn peer_removed_under_traffic() {
    let (_net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    // Keep A sending while B drops the peer.
    let mut cfg = b.engine.config();
    cfg.peers.clear();
    for k in 0..20 {
        a.tun.inject(ipv4(a.tunnel_ip, b.tunnel_ip, 100 + k, 100));
        if k == 10 {
            b.engine.apply(cfg.clone()).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while b.receive(Duration::from_millis(100)).is_some() {}
    assert!(b.engine.status().peers.is_empty());
    assert!(!deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 999, 100), Duration::from_secs(2)));
    assert!(b.engine.is_running() && a.engine.is_running());
}

#[test]
fn inner_source_must_belong_to_the_peer() {
    let (_net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    // A claims another address: B drops it and counts why.
    let spoofed = ipv4("10.9.0.77".parse().unwrap(), b.tunnel_ip, 2, 100);
    // A routes by destination, so the spoofed packet is sealed and sent.
    assert!(!deliver(&a, &b, &spoofed, Duration::from_secs(1)));
    assert!(b.drops("disallowed_source") > 0, "{:?}", b.engine.drop_counters());
    // Packets to a destination no peer owns never leave A.
    let nowhere = ipv4(a.tunnel_ip, "10.9.9.9".parse().unwrap(), 3, 100);
    a.tun.inject(nowhere);
    assert!(b.receive(Duration::from_millis(500)).is_none());
}

#[test]
fn engine_stops_when_the_tun_goes_away() {
    let net = MemoryNetwork::new();
    let a = Node::start(&net, "192.0.2.1", 1, "10.9.0.1");
    a.tun.close();
    assert!(matches!(a.engine.wait(Duration::from_secs(5)), Some(vpn_dataplane::StopReason::TunGone(_))));
}

#[test]
fn listen_port_change_and_refusal() {
    let net = MemoryNetwork::new();
    let a = Node::start(&net, "192.0.2.1", 1, "10.9.0.1");
    let b = Node::start(&net, "192.0.2.1", 2, "10.9.0.2");
    let mut cfg = a.engine.config();
    cfg.listen_port = 51820;
    a.engine.apply(cfg).unwrap();
    assert_eq!(a.engine.listen_port(), 51820);
    // B on the same host cannot take A's port, and nothing of B's configuration changes.
    let before = b.engine.config();
    let mut cfg = before.clone();
    cfg.listen_port = 51820;
    cfg.private_key = Some(vpn_crypto::PrivateKey::from_bytes([9; 32]));
    assert!(b.engine.apply(cfg).is_err());
    assert_eq!(b.engine.config(), before);
}

#[test]
fn handshake_flood_does_not_starve_an_established_tunnel() {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use vpn_dataplane::Network;
    use vpn_tunnel::constants::LABEL_MAC1;
    use vpn_tunnel::noise::labelled_key;

    let (net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    // An attacker who knows B's public key floods it with initiations that carry a valid mac1
    // (so they pass the cheap check) from many addresses.
    let mac1_key = labelled_key(LABEL_MAC1, &b.public);
    let target: SocketAddr = b.endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..2u8)
        .map(|i| {
            let host = net.host(format!("203.0.113.{}", i + 1).parse().unwrap());
            let (stop, mac1_key) = (Arc::clone(&stop), mac1_key);
            std::thread::spawn(move || {
                let sock = host.bind(0, 0).unwrap().sockets.remove(0);
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let mut m = [0u8; 148];
                    m[0] = 1;
                    m[4..8].copy_from_slice(&n.to_le_bytes());
                    m[8..116].iter_mut().enumerate().for_each(|(j, x)| *x = (j as u32 ^ n) as u8);
                    let mac = vpn_crypto::blake2s::mac(&mac1_key, &[&m[..116]]);
                    m[116..132].copy_from_slice(&mac);
                    let _ = sock.send(&m, target);
                    n = n.wrapping_add(1);
                    if n % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
                n
            })
        })
        .collect();
    // Data keeps flowing both ways during the flood.
    for k in 0..20 {
        assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 100 + k, 200), T), "A→B {k} during the flood");
        assert!(deliver(&b, &a, &ipv4(b.tunnel_ip, a.tunnel_ip, 200 + k, 200), T), "B→A {k} during the flood");
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u32 = flooders.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(sent > 1000, "the flood was real: {sent} initiations");
    let drops = b.engine.drop_counters();
    let refused: u64 = drops.iter().filter(|(n, _)| ["handshake_failed", "handshake_queue_full"].contains(n)).map(|(_, v)| v).sum();
    assert!(refused > 0, "{drops:?}");
}

/// The MTU of a running interface changes (`ip link set mtu`): jumbo packets pass both ways once
/// it is raised, beyond what the engine's buffers were first sized for, and the padding follows
/// the MTU in force, raised or lowered (the byte counters show the exact message lengths).
#[test]
fn mtu_changed_on_the_running_interface() {
    let (_net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 0, 1420), T));
    for mtu in [9000, 16000] {
        a.tun.set_mtu(mtu);
        b.tun.set_mtu(mtu);
        // The packets read before the engine resized its buffers are dropped; `deliver` resends.
        let id = mtu as u32;
        assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, id, mtu), T), "a {mtu}-byte packet A→B at MTU {mtu}");
        assert!(deliver(&b, &a, &ipv4(b.tunnel_ip, a.tunnel_ip, id + 1, mtu), T), "a {mtu}-byte packet B→A at MTU {mtu}");
    }
    // One packet of `len` bytes A→B: the receiver counts header, padded packet and tag (before it
    // delivers the packet, so the counter is final once the packet is out).
    let message_len = |len: usize| {
        let rx0 = b.engine.status().peers[0].rx_bytes;
        a.tun.inject(ipv4(a.tunnel_ip, b.tunnel_ip, 7, len));
        let p = b.receive(T).expect("the packet arrives");
        assert_eq!(p.len(), len);
        b.engine.status().peers[0].rx_bytes - rx0
    };
    // At MTU 16000 a 1501-byte packet is padded to 1504 (the MTU the engine started with, 1420,
    // would have capped the padding at the packet's own length).
    assert_eq!(message_len(1501), 32 + 1504);
    // Lowered to 1284: a 1283-byte packet is padded to the MTU, not to 1296.
    a.tun.set_mtu(1284);
    assert_eq!(message_len(1283), 32 + 1284);
    assert_eq!(message_len(1000), 32 + 1008);
}

/// Waits until `node` has counted at least `n` drops for `reason`.
fn wait_for_drops(node: &vpn_tests::Node, reason: &str, n: u64) -> bool {
    let deadline = std::time::Instant::now() + T;
    while std::time::Instant::now() < deadline {
        if node.drops(reason) >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Packets read from TUN that cannot go out are counted by reason, never dropped unseen: no peer
/// for the destination (`no_route`), the socket refusing the datagram (`send_failed`, and the
/// transfer counter does not count them), a packet larger than one UDP datagram carries
/// (`too_large`, with an MTU above 65,475); the largest packet that fits still passes with such
/// an MTU, since the padding stays within the datagram.
#[test]
fn outbound_drops_are_counted_by_reason() {
    let (net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 0, 100), T));

    for k in 0..3 {
        a.tun.inject(ipv4(a.tunnel_ip, "10.9.9.9".parse().unwrap(), 10 + k, 100));
    }
    assert!(wait_for_drops(&a, "no_route", 3), "{:?}", a.engine.drop_counters());

    let tx0 = a.engine.status().peers[0].tx_bytes;
    net.set_refusing(true);
    for k in 0..5 {
        a.tun.inject(ipv4(a.tunnel_ip, b.tunnel_ip, 20 + k, 1000));
    }
    assert!(wait_for_drops(&a, "send_failed", 5), "{:?}", a.engine.drop_counters());
    assert_eq!(a.engine.status().peers[0].tx_bytes, tx0, "refused datagrams are not counted as sent");
    net.set_refusing(false);
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 30, 1000), T), "sends work again");

    a.tun.set_mtu(65_535);
    b.tun.set_mtu(65_535);
    a.tun.inject(ipv4(a.tunnel_ip, b.tunnel_ip, 40, 65_500));
    assert!(wait_for_drops(&a, "too_large", 1), "{:?}", a.engine.drop_counters());
    // 65,475 bytes padded within the 65,535 MTU would be 65,488: more than a datagram carries.
    let largest = ipv4(a.tunnel_ip, b.tunnel_ip, 41, 65_475);
    assert!(deliver(&a, &b, &largest, T), "a 65,475-byte packet passes at MTU 65,535");
    while let Some(p) = b.receive(Duration::from_millis(200)) {
        assert_ne!(p.len(), 65_500, "the oversize packet must not arrive");
    }
}

/// Junk from the network is refused before it costs anything and counted by reason, exactly
/// once each: too short to have a type or of an unknown type (`malformed`), handshake messages
/// without a valid mac1 (`invalid_mac1`; `no_private_key` on an interface without a key), data
/// messages and cookie replies naming no session or handshake (`unknown_index`).
#[test]
fn junk_datagrams_are_counted_by_reason() {
    use vpn_dataplane::Network;

    let (net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    let reasons = ["malformed", "invalid_mac1", "unknown_index"];
    let before: Vec<u64> = reasons.iter().map(|r| b.drops(r)).collect();
    let sock = net.host("203.0.113.9".parse().unwrap()).bind(0, 0).unwrap().sockets.remove(0);
    let message = |kind: u8, len: usize, fill: u8| {
        let mut m = vec![fill; len];
        m[..4.min(len)].copy_from_slice(&[kind, 0, 0, 0][..4.min(len)]);
        m
    };
    let junk = [
        (message(1, 3, 0), 2),      // no room for a type
        (message(9, 100, 7), 3),    // unknown type
        (message(4, 20, 7), 1),     // data shorter than a header and tag
        (message(1, 148, 0xa5), 4), // initiations with a wrong mac1
        (message(2, 92, 0x5a), 1),  // a response with a wrong mac1
        (message(4, 64, 0xee), 6),  // data for receiver index 0xeeeeeeee
        (message(3, 64, 0xdd), 2),  // cookie replies for receiver index 0xdddddddd
    ];
    for (datagram, n) in &junk {
        for _ in 0..*n {
            sock.send(datagram, b.endpoint()).unwrap();
        }
    }
    let expected = [2 + 3 + 1, 4 + 1, 6 + 2];
    for ((reason, was), n) in reasons.iter().zip(&before).zip(expected) {
        assert!(wait_for_drops(&b, reason, was + n), "{reason}: {:?}", b.engine.drop_counters());
    }
    // Data still flows, and nothing was counted twice.
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 2, 100), T));
    let after: Vec<u64> = reasons.iter().map(|r| b.drops(r)).collect();
    let counted: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    assert_eq!(counted, expected, "{reasons:?}");

    // An interface without a private key yet counts handshake messages as such.
    let c = Node::start(&net, "192.0.2.3", 3, "10.9.0.3");
    for _ in 0..2 {
        sock.send(&message(1, 148, 0xa5), c.endpoint()).unwrap();
    }
    assert!(wait_for_drops(&c, "no_private_key", 2), "{:?}", c.engine.drop_counters());
    assert_eq!(c.drops("invalid_mac1"), 0);
}

/// Forged cookie replies (64 bytes of type 3, which anyone can send: only the handshake they
/// answer can tell them from real ones) arriving in a burst just before a new initiator's first
/// initiation do not keep it out: they have a queue of their own, so none of them takes a place
/// in the handshake queue (not one `handshake_queue_full`), and each is counted exactly once.
#[test]
fn forged_cookie_replies_do_not_crowd_out_initiations() {
    use vpn_dataplane::{Network, COOKIE_QUEUE, HANDSHAKE_QUEUE};

    let (net, a, b) = pair();
    let sock = net.host("203.0.113.7".parse().unwrap()).bind(0, 0).unwrap().sockets.remove(0);
    // More than both queues hold, fewer than the in-memory socket buffers (nothing is lost on
    // the way, so every one of them must be counted).
    let burst = 3 * HANDSHAKE_QUEUE + COOKIE_QUEUE;
    for n in 0..burst as u32 {
        let mut m = [0x33u8; 64];
        m[..4].copy_from_slice(&[3, 0, 0, 0]);
        m[4..8].copy_from_slice(&n.to_le_bytes());
        sock.send(&m, b.endpoint()).unwrap();
    }
    // A's first packet: its initiation arrives right behind the burst.
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    assert!(deliver(&b, &a, &ipv4(b.tunnel_ip, a.tunnel_ip, 2, 100), T));
    let counted = || b.drops("unknown_index") + b.drops("cookie_queue_full");
    let deadline = std::time::Instant::now() + T;
    while counted() < burst as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(counted(), burst as u64, "{:?}", b.engine.drop_counters());
    assert_eq!(b.drops("handshake_queue_full"), 0, "{:?}", b.engine.drop_counters());
}

/// A packet to an address no peer has is answered, as the kernel's WireGuard answers it, with an
/// ICMP host unreachable written back to TUN from that address, quoting the packet; a packet to
/// a multicast address is only counted.
#[test]
fn packets_no_peer_takes_are_answered_with_icmp_unreachable() {
    let (_net, a, b) = pair();
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 1, 100), T));
    let nowhere: std::net::IpAddr = "10.9.9.9".parse().unwrap();
    let lost = ipv4(a.tunnel_ip, nowhere, 5, 100);
    a.tun.inject(lost.clone());
    let answer = a.receive(T).expect("an ICMP answer on A's TUN");
    assert_eq!(answer.len(), 28 + lost.len());
    assert_eq!(answer[9], 1, "ICMP");
    assert_eq!(answer[12..16], lost[16..20], "from the unreachable address");
    assert_eq!(answer[16..20], lost[12..16], "to the sender");
    assert_eq!((answer[20], answer[21]), (3, 1), "destination unreachable, host");
    assert_eq!(answer[28..], lost[..]);
    assert_eq!(a.drops("no_route"), 1);

    a.tun.inject(ipv4(a.tunnel_ip, "224.0.0.251".parse().unwrap(), 6, 100));
    assert!(wait_for_drops(&a, "no_route", 2), "{:?}", a.engine.drop_counters());
    assert_eq!(a.receive(Duration::from_millis(300)), None, "no answer to multicast");
}
