//! Key rotation through the engine. Server key: a server whose configuration names a retiring
//! private key keeps serving a client that still has its old public key, next to one that has the
//! new key, until the retiring key is removed from the configuration. Device key: the new key
//! takes over the device's addresses at its first handshake, so the client's first packets with
//! its new configuration pass.

use std::time::Duration;

use vpn_crypto::{PrivateKey, PublicKey};
use vpn_dataplane::memory::MemoryNetwork;
use vpn_dataplane::{InterfaceConfig, IpPrefix, PeerSettings};
use vpn_tests::{deliver, ipv4, Node};

const T: Duration = Duration::from_secs(10);

/// The server's configuration: `clients` as peers, allowed their tunnel addresses.
fn server_config(private: &PrivateKey, retiring: Option<PrivateKey>, clients: &[&Node]) -> InterfaceConfig {
    let peers = clients
        .iter()
        .map(|c| {
            let mut p = PeerSettings::new(c.public);
            p.allowed_ips = vec![IpPrefix::host(c.tunnel_ip)];
            p
        })
        .collect();
    InterfaceConfig { private_key: Some(private.clone()), retiring_private_key: retiring, peers, ..InterfaceConfig::default() }
}

/// A client's configuration: the server under `server_key`, at its endpoint.
fn client_config(client: &Node, server: &Node, server_key: PublicKey) -> InterfaceConfig {
    let mut p = PeerSettings::new(server_key);
    p.allowed_ips = vec![IpPrefix::host(server.tunnel_ip)];
    p.endpoint = Some(server.endpoint());
    InterfaceConfig { private_key: Some(client.private.clone()), peers: vec![p], ..InterfaceConfig::default() }
}

#[test]
fn old_key_client_is_served_during_the_grace_period_and_refused_after() {
    let net = MemoryNetwork::new();
    let old_key = PrivateKey::from_bytes([10; 32]);
    // The server's node key (seed 11) is its new key.
    let server = Node::start(&net, "192.0.2.1", 11, "10.9.0.1");
    let old_client = Node::start(&net, "192.0.2.2", 2, "10.9.0.2");
    let new_client = Node::start(&net, "192.0.2.3", 3, "10.9.0.3");

    let mut cfg = server_config(&server.private, Some(old_key.clone()), &[&old_client, &new_client]);
    server.engine.apply(cfg.clone()).unwrap();
    let old_client_cfg = client_config(&old_client, &server, old_key.public_key());
    old_client.engine.apply(old_client_cfg.clone()).unwrap();
    new_client.engine.apply(client_config(&new_client, &server, server.public)).unwrap();

    for (k, c) in [&old_client, &new_client].into_iter().enumerate() {
        let k = k as u32;
        assert!(deliver(c, &server, &ipv4(c.tunnel_ip, server.tunnel_ip, k, 100), T), "client {k} → server");
        assert!(deliver(&server, c, &ipv4(server.tunnel_ip, c.tunnel_ip, 10 + k, 100), T), "server → client {k}");
    }
    assert_eq!(server.drops("invalid_mac1"), 0);
    // The UAPI view shows the primary key only.
    assert_eq!(server.engine.status().private_key, Some(server.private.clone()));
    assert_eq!(server.engine.config().retiring_private_key, Some(old_key.clone()));

    // The grace period ends.
    cfg.retiring_private_key = None;
    server.engine.apply(cfg).unwrap();
    assert!(deliver(&new_client, &server, &ipv4(new_client.tunnel_ip, server.tunnel_ip, 20, 100), T));
    // The old-key client starts afresh (a new handshake at once): refused, counted.
    old_client.engine.apply_recreating(old_client_cfg, &[old_key.public_key()]).unwrap();
    let p = ipv4(old_client.tunnel_ip, server.tunnel_ip, 21, 100);
    assert!(!deliver(&old_client, &server, &p, Duration::from_secs(2)));
    assert!(server.drops("invalid_mac1") > 0, "{:?}", server.engine.drop_counters());
    assert!(server.engine.is_running());
}

#[test]
fn rotating_the_server_key_keeps_the_tunnel_up() {
    let net = MemoryNetwork::new();
    let server = Node::start(&net, "192.0.2.1", 10, "10.9.0.1");
    let client = Node::start(&net, "192.0.2.2", 2, "10.9.0.2");
    let old_key = server.private.clone();
    server.engine.apply(server_config(&old_key, None, &[&client])).unwrap();
    client.engine.apply(client_config(&client, &server, server.public)).unwrap();
    assert!(deliver(&client, &server, &ipv4(client.tunnel_ip, server.tunnel_ip, 1, 100), T));
    let before = server.engine.status().peers[0].last_handshake;

    // New primary key, the old one retiring: the session stays, so packets flow both ways at
    // once, without a new handshake.
    let new_key = PrivateKey::from_bytes([11; 32]);
    server.engine.apply(server_config(&new_key, Some(old_key), &[&client])).unwrap();
    for k in 2..6 {
        assert!(deliver(&client, &server, &ipv4(client.tunnel_ip, server.tunnel_ip, k, 100), T));
        assert!(deliver(&server, &client, &ipv4(server.tunnel_ip, client.tunnel_ip, 100 + k, 100), T));
    }
    assert_eq!(server.engine.status().peers[0].last_handshake, before);
    assert_eq!(server.engine.status().private_key, Some(new_key));
}

/// A device's key rotation as the control plane configures it: the old key keeps the device's
/// address, the new key has none and takes over from the old one. The client's very first packet
/// with its new key (sent once) arrives, the server's answer reaches it, and the addresses stay
/// with the new key when the control plane, not yet aware, applies the same configuration again.
#[test]
fn new_device_key_takes_over_the_address_at_its_first_handshake() {
    let net = MemoryNetwork::new();
    let server = Node::start(&net, "192.0.2.1", 1, "10.9.0.1");
    let client = Node::start(&net, "192.0.2.2", 2, "10.9.0.2");
    server.engine.apply(server_config(&server.private, None, &[&client])).unwrap();
    client.engine.apply(client_config(&client, &server, server.public)).unwrap();
    assert!(deliver(&client, &server, &ipv4(client.tunnel_ip, server.tunnel_ip, 1, 100), T));
    let old_public = client.public;

    // The client with its new key: a fresh interface (as when its app loads the new
    // configuration), at the same tunnel address.
    let renewed = Node::start(&net, "192.0.2.3", 3, "10.9.0.2");
    let new_public = renewed.public;
    let mut rotating = server_config(&server.private, None, &[&client]);
    let mut p = PeerSettings::new(new_public);
    p.takes_over = Some(client.public);
    rotating.peers.push(p);
    server.engine.apply(rotating.clone()).unwrap();
    assert!(server.engine.config().peer(&new_public).unwrap().allowed_ips.is_empty(), "no address before a handshake");
    assert!(deliver(&client, &server, &ipv4(client.tunnel_ip, server.tunnel_ip, 2, 100), T), "the old key still works");
    drop(client);

    // Its first packet starts the handshake, and is sent once.
    let client = renewed;
    client.engine.apply(client_config(&client, &server, server.public)).unwrap();
    client.tun.inject(ipv4(client.tunnel_ip, server.tunnel_ip, 3, 100));
    let first = server
        .receive(T)
        .unwrap_or_else(|| panic!("the first packet with the new key did not arrive: {:?}", server.engine.drop_counters()));
    assert_eq!(first, ipv4(client.tunnel_ip, server.tunnel_ip, 3, 100));
    server.tun.inject(ipv4(server.tunnel_ip, client.tunnel_ip, 4, 100));
    assert_eq!(client.receive(T).expect("the server's answer reaches the new key"), ipv4(server.tunnel_ip, client.tunnel_ip, 4, 100));
    assert_eq!(server.drops("disallowed_source"), 0, "{:?}", server.engine.drop_counters());

    let check = |when: &str| {
        let live = server.engine.config();
        assert_eq!(live.peer(&new_public).unwrap().allowed_ips, vec![IpPrefix::host(client.tunnel_ip)], "{when}");
        assert_eq!(live.peer(&new_public).unwrap().takes_over, None, "{when}");
        assert!(live.peer(&old_public).unwrap().allowed_ips.is_empty(), "{when}: the old key keeps no address");
        let status = server.engine.status();
        let new_status = status.peers.iter().find(|p| p.public_key == new_public).unwrap();
        assert_eq!(new_status.allowed_ips, vec![IpPrefix::host(client.tunnel_ip)], "{when}: the UAPI view");
    };
    check("after the first handshake");
    // The control plane applies its rotation-in-progress configuration again (another device
    // changed, say): the addresses do not move back.
    server.engine.apply(rotating).unwrap();
    check("after the same configuration again");
    assert!(deliver(&client, &server, &ipv4(client.tunnel_ip, server.tunnel_ip, 5, 100), T));
    assert!(deliver(&server, &client, &ipv4(server.tunnel_ip, client.tunnel_ip, 6, 100), T));
    // The rotation completes: only the new key, with the address; the session stays.
    let mut done = server_config(&server.private, None, &[]);
    let mut p = PeerSettings::new(new_public);
    p.allowed_ips = vec![IpPrefix::host(client.tunnel_ip)];
    done.peers.push(p);
    server.engine.apply(done).unwrap();
    client.tun.inject(ipv4(client.tunnel_ip, server.tunnel_ip, 7, 100));
    assert_eq!(server.receive(T).expect("the session outlives the completion"), ipv4(client.tunnel_ip, server.tunnel_ip, 7, 100));
    assert_eq!(server.drops("disallowed_source"), 0, "{:?}", server.engine.drop_counters());
}
