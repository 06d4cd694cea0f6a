//! Server key rotation through the engine: a server whose configuration names a retiring private
//! key keeps serving a client that still has its old public key, next to one that has the new
//! key, until the retiring key is removed from the configuration.

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

fn invalid_mac1(node: &Node) -> u64 {
    node.engine.drop_counters().iter().find(|(n, _)| *n == "invalid_mac1").map_or(0, |(_, v)| *v)
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
    assert_eq!(invalid_mac1(&server), 0);
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
    assert!(invalid_mac1(&server) > 0, "{:?}", server.engine.drop_counters());
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
