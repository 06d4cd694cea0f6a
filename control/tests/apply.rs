//! `apply`: wireguard-go's `set` semantics on a copy of the configuration, checked on the sequence
//! of requests that was run against wireguard-go 0.0.20220316 and against a naive model.

mod common;

use common::{hex, pk, to_uapi};
use proptest::prelude::*;
use vpn_control::uapi::parse::parse_set;
use vpn_control::uapi::{apply, AllowedIpChange, Errno, PeerRequest, PrivateKeyChange, SetRequest, MAX_PEERS};
use vpn_crypto::keys::to_hex;
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_dataplane::{InterfaceConfig, IpPrefix, PeerSettings};

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_bytes([n; 32])
}

/// Applies a request body given as text.
fn set(cfg: &InterfaceConfig, body: &str) -> Result<InterfaceConfig, Errno> {
    let req = parse_set(body.as_bytes()).map_err(|e| e.errno())?;
    apply(cfg, &req)
}

/// `peer:prefix,prefix peer:...` for compact comparisons; peers named by `names`.
fn summary(cfg: &InterfaceConfig, names: &[(PublicKey, &str)]) -> String {
    cfg.peers
        .iter()
        .map(|p| {
            let name = names.iter().find(|(k, _)| *k == p.public_key).map_or("?", |(_, n)| n);
            let ips: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
            format!("{name}:{}", ips.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sequence run against wireguard-go (`tests` in the report); results as it gave them, with
/// its Go map order replaced by configuration order.
#[test]
fn same_results_as_wireguard_go() {
    let k1 = key(1);
    let k2 = key(2);
    let own1 = k1.public_key();
    let own2 = k2.public_key();
    let (p2, p3, p4) = (own2, pk(3), pk(4));
    let names = [(p2, "P2"), (p3, "P3"), (p4, "P4"), (own1, "OWN")];
    let h = |k: &PublicKey| hex(k);
    let s = |c: &InterfaceConfig| summary(c, &names);

    let c =
        set(&InterfaceConfig::default(), &format!("private_key={}\nlisten_port=0\nfwmark=0\nreplace_peers=true\n", to_hex(k1.as_bytes())))
            .unwrap();
    assert_eq!(s(&c), "");
    // A peer with our own public key is ignored.
    let c = set(&c, &format!("public_key={}\nallowed_ip=10.0.0.1/32\n", h(&own1))).unwrap();
    assert_eq!(s(&c), "");
    // update_only never creates.
    let c = set(&c, &format!("public_key={}\nupdate_only=true\nallowed_ip=10.0.0.2/32\n", h(&p2))).unwrap();
    assert_eq!(s(&c), "");
    // Duplicates and host bits collapse into one entry.
    let c = set(
        &c,
        &format!(
            "public_key={}\nallowed_ip=10.0.0.0/24\nallowed_ip=10.0.0.0/24\nallowed_ip=10.0.0.5/24\nallowed_ip=10.1.0.0/16\npublic_key={}\nallowed_ip=10.2.0.0/16\n",
            h(&p2),
            h(&p3)
        ),
    )
    .unwrap();
    assert_eq!(s(&c), "P2:10.0.0.0/24,10.1.0.0/16 P3:10.2.0.0/16");
    // A prefix moves to the last peer given it.
    let c = set(&c, &format!("public_key={}\nallowed_ip=10.0.0.0/24\n", h(&p3))).unwrap();
    assert_eq!(s(&c), "P2:10.1.0.0/16 P3:10.2.0.0/16,10.0.0.0/24");
    // Re-adding a prefix a peer has puts it last.
    let c = set(&c, &format!("public_key={}\nallowed_ip=10.1.0.0/16\nallowed_ip=10.3.0.0/16\nallowed_ip=10.1.0.0/16\n", h(&p2))).unwrap();
    assert_eq!(s(&c), "P2:10.3.0.0/16,10.1.0.0/16 P3:10.2.0.0/16,10.0.0.0/24");
    // update_only for an absent peer ignores the block, wherever update_only appears.
    let c = set(&c, &format!("public_key={}\nallowed_ip=10.9.0.0/16\nupdate_only=true\n", h(&p4))).unwrap();
    assert_eq!(s(&c), "P2:10.3.0.0/16,10.1.0.0/16 P3:10.2.0.0/16,10.0.0.0/24");
    // Divergence: wireguard-go took 10.0.0.0/24 from P3 here before dropping the new peer.
    let c = set(&c, &format!("public_key={}\nallowed_ip=10.0.0.0/24\nupdate_only=true\n", h(&p4))).unwrap();
    assert_eq!(s(&c), "P2:10.3.0.0/16,10.1.0.0/16 P3:10.2.0.0/16,10.0.0.0/24");
    // remove; lines after it do nothing.
    let c = set(&c, &format!("public_key={}\nremove=true\nallowed_ip=10.7.0.0/16\n", h(&p3))).unwrap();
    assert_eq!(s(&c), "P2:10.3.0.0/16,10.1.0.0/16");
    let c = set(&c, &format!("public_key={}\nremove=true\n", h(&p4))).unwrap();
    assert_eq!(s(&c), "P2:10.3.0.0/16,10.1.0.0/16");
    // A new private key whose public key is a peer's removes that peer.
    let c = set(&c, &format!("private_key={}\n", to_hex(k2.as_bytes()))).unwrap();
    assert_eq!(c.private_key, Some(k2.clone()));
    assert_eq!(s(&c), "");
    // The own-key check uses the key in effect after the request.
    let c = set(
        &c,
        &format!(
            "private_key={}\npublic_key={}\nallowed_ip=10.5.0.0/16\npublic_key={}\nallowed_ip=10.6.0.0/16\nreplace_allowed_ips=true\nallowed_ip=10.7.0.0/16\n",
            to_hex(k1.as_bytes()),
            h(&p3),
            h(&p3)
        ),
    )
    .unwrap();
    assert_eq!(s(&c), "P3:10.7.0.0/16");
    // Two blocks for one key.
    let c = set(&c, &format!("public_key={}\nallowed_ip=10.8.0.0/16\npublic_key={}\nendpoint=1.1.1.1:1\n", h(&p4), h(&p4))).unwrap();
    assert_eq!(s(&c), "P3:10.7.0.0/16 P4:10.8.0.0/16");
    assert_eq!(c.peer(&p4).unwrap().endpoint, Some("1.1.1.1:1".parse().unwrap()));
    // An all-zero private key removes it; peers stay.
    let c = set(&c, &format!("private_key={}\n", "0".repeat(64))).unwrap();
    assert_eq!(c.private_key, None);
    assert_eq!(s(&c), "P3:10.7.0.0/16 P4:10.8.0.0/16");
    // IPv4-mapped, long IPv6 forms, defaults.
    let c = set(
        &c,
        &format!(
            "private_key={}\npublic_key={}\nallowed_ip=::ffff:10.0.0.1/104\nallowed_ip=2001:0db8:0:0:1:0:0:1/128\nallowed_ip=::/0\nallowed_ip=0.0.0.0/0\n",
            to_hex(k1.as_bytes()),
            h(&p4)
        ),
    )
    .unwrap();
    assert_eq!(s(&c), "P3:10.7.0.0/16 P4:10.8.0.0/16,::ffff:10.0.0.0/104,2001:db8::1:0:0:1/128,::/0,0.0.0.0/0");
    // A request that fails on its last block changes nothing (wireguard-go applied the first).
    let before = c.clone();
    let err = set(&c, &format!("public_key={}\nallowed_ip=10.99.0.0/16\npublic_key={}\nallowed_ip=bogus\n", h(&p2), h(&p3))).unwrap_err();
    assert_eq!(err, Errno::EINVAL);
    assert_eq!(c, before);
}

#[test]
fn removal_of_single_prefixes() {
    let c = set(
        &InterfaceConfig::default(),
        &format!(
            "public_key={}\nallowed_ip=10.0.0.0/8\nallowed_ip=10.1.0.0/16\npublic_key={}\nallowed_ip=10.2.0.0/16\n",
            hex(&pk(1)),
            hex(&pk(2))
        ),
    )
    .unwrap();
    // `-prefix` removes only from the peer that has it; host bits are masked first.
    let c = set(&c, &format!("public_key={}\nallowed_ip=-10.2.0.0/16\nallowed_ip=-10.1.2.3/16\n", hex(&pk(1)))).unwrap();
    assert_eq!(c.peers[0].allowed_ips, vec!["10.0.0.0/8".parse::<IpPrefix>().unwrap()]);
    assert_eq!(c.peers[1].allowed_ips, vec!["10.2.0.0/16".parse::<IpPrefix>().unwrap()]);
}

#[test]
fn scalar_fields_and_psk() {
    let body = format!(
        "listen_port=51820\nfwmark=7\npublic_key={}\npreshared_key={}\nendpoint=[2001:db8::1]:5\npersistent_keepalive_interval=25\n",
        hex(&pk(1)),
        "11".repeat(32)
    );
    let c = set(&InterfaceConfig::default(), &body).unwrap();
    assert_eq!((c.listen_port, c.fwmark), (51820, 7));
    let p = &c.peers[0];
    assert_eq!(p.preshared_key, PresharedKey::from_bytes([0x11; 32]));
    assert_eq!(p.endpoint, Some("[2001:db8::1]:5".parse().unwrap()));
    assert_eq!(p.persistent_keepalive, 25);
    // Keys not mentioned keep their values; zeros clear the PSK.
    let c = set(&c, &format!("public_key={}\npreshared_key={}\n", hex(&pk(1)), "0".repeat(64))).unwrap();
    assert_eq!(c.peers[0].preshared_key, PresharedKey::default());
    assert_eq!(c.peers[0].persistent_keepalive, 25);
    assert_eq!(c.listen_port, 51820);
}

#[test]
fn at_most_max_peers() {
    let mut req = SetRequest::default();
    for n in 0..=MAX_PEERS as u32 {
        req.peers.push(PeerRequest::new(pk(n)));
    }
    assert_eq!(apply(&InterfaceConfig::default(), &req), Err(Errno::EINVAL));
    req.peers.pop();
    let c = apply(&InterfaceConfig::default(), &req).unwrap();
    assert_eq!(c.peers.len(), MAX_PEERS);
    // Updating existing peers at the limit is fine, creating one more is not.
    let mut more = SetRequest::default();
    more.peers.push(PeerRequest { persistent_keepalive: Some(5), ..PeerRequest::new(pk(0)) });
    assert!(apply(&c, &more).is_ok());
    more.peers.push(PeerRequest::new(pk(MAX_PEERS as u32 + 7)));
    assert_eq!(apply(&c, &more), Err(Errno::EINVAL));
}

// --- A naive model: wireguard-go's semantics written the obvious (quadratic) way. ---

fn model(cfg: &InterfaceConfig, req: &SetRequest) -> Result<InterfaceConfig, Errno> {
    let mut c = cfg.clone();
    match &req.private_key {
        Some(PrivateKeyChange::Set(k)) => c.private_key = Some(k.clone()),
        Some(PrivateKeyChange::Clear) => c.private_key = None,
        None => {}
    }
    if let Some(p) = req.listen_port {
        c.listen_port = p;
    }
    if let Some(m) = req.fwmark {
        c.fwmark = m;
    }
    if req.replace_peers {
        c.peers.clear();
    }
    let own = c.private_key.as_ref().map(PrivateKey::public_key);
    c.peers.retain(|p| Some(p.public_key) != own);
    for b in &req.peers {
        if Some(b.public_key) == own {
            continue;
        }
        let pos = c.peers.iter().position(|p| p.public_key == b.public_key);
        if b.remove {
            if let Some(i) = pos {
                c.peers.remove(i);
            }
            continue;
        }
        let i = match pos {
            Some(i) => i,
            None if b.update_only => continue,
            None if c.peers.len() >= MAX_PEERS => return Err(Errno::EINVAL),
            None => {
                c.peers.push(PeerSettings::new(b.public_key));
                c.peers.len() - 1
            }
        };
        if let Some(k) = &b.preshared_key {
            c.peers[i].preshared_key = k.clone();
        }
        if let Some(e) = b.endpoint {
            c.peers[i].endpoint = Some(e);
        }
        if let Some(k) = b.persistent_keepalive {
            c.peers[i].persistent_keepalive = k;
        }
        if b.replace_allowed_ips {
            c.peers[i].allowed_ips.clear();
        }
        for ch in &b.allowed_ips {
            match *ch {
                AllowedIpChange::Add(p) => {
                    for q in &mut c.peers {
                        q.allowed_ips.retain(|x| *x != p);
                    }
                    c.peers[i].allowed_ips.push(p);
                }
                AllowedIpChange::Remove(p) => c.peers[i].allowed_ips.retain(|x| *x != p),
            }
        }
    }
    Ok(c)
}

/// Small domains, so that keys and prefixes collide often.
fn arb_prefix() -> impl Strategy<Value = IpPrefix> {
    (0u8..6, prop::bool::ANY).prop_map(|(n, v6)| {
        if v6 {
            format!("fd00:{n}::/32").parse().unwrap()
        } else {
            format!("10.{n}.0.0/16").parse().unwrap()
        }
    })
}

/// Peer keys 0..6, plus the public keys of private keys 1 and 2.
fn arb_peer_key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![4 => (0u32..6).prop_map(pk), 1 => (1u8..=2).prop_map(|n| key(n).public_key())]
}

fn arb_config() -> impl Strategy<Value = InterfaceConfig> {
    (proptest::option::of(1u8..=3), proptest::collection::vec((arb_peer_key(), proptest::collection::vec(arb_prefix(), 0..4)), 0..5))
        .prop_map(|(k, peers)| {
            // Build it through the model so that it is a configuration `apply` could have produced.
            let mut req = SetRequest { private_key: k.map(|n| PrivateKeyChange::Set(key(n))), ..SetRequest::default() };
            for (pkey, ips) in peers {
                req.peers.push(PeerRequest { allowed_ips: ips.into_iter().map(AllowedIpChange::Add).collect(), ..PeerRequest::new(pkey) });
            }
            model(&InterfaceConfig::default(), &req).unwrap()
        })
}

fn arb_request() -> impl Strategy<Value = SetRequest> {
    let peer = (
        arb_peer_key(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u16>()),
        prop::bool::weighted(0.3),
        proptest::collection::vec((prop::bool::weighted(0.7), arb_prefix()), 0..5),
    )
        .prop_map(|(k, update_only, remove, psk, ka, replace, ips)| PeerRequest {
            update_only,
            remove,
            preshared_key: psk.map(|b| PresharedKey::from_bytes([b; 32])),
            endpoint: None,
            persistent_keepalive: ka,
            replace_allowed_ips: replace,
            allowed_ips: ips.into_iter().map(|(add, p)| if add { AllowedIpChange::Add(p) } else { AllowedIpChange::Remove(p) }).collect(),
            ..PeerRequest::new(k)
        });
    (
        proptest::option::of(proptest::option::of(1u8..=3)),
        proptest::option::of(any::<u16>()),
        prop::bool::weighted(0.2),
        proptest::collection::vec(peer, 0..6),
    )
        .prop_map(|(k, port, replace_peers, peers)| SetRequest {
            private_key: k.map(|k| k.map_or(PrivateKeyChange::Clear, |n| PrivateKeyChange::Set(key(n)))),
            listen_port: port,
            fwmark: None,
            replace_peers,
            peers,
        })
}

proptest! {
    #[test]
    fn apply_matches_model(cfg in arb_config(), req in arb_request()) {
        let got = apply(&cfg, &req);
        prop_assert_eq!(&got, &model(&cfg, &req));
        let got = got.unwrap();
        // Invariants: one owner per prefix, unique keys, never our own key.
        let mut seen = std::collections::HashSet::new();
        for p in &got.peers {
            for ip in &p.allowed_ips {
                prop_assert!(seen.insert(*ip), "prefix {} twice", ip);
            }
        }
        let keys: std::collections::HashSet<_> = got.peers.iter().map(|p| p.public_key).collect();
        prop_assert_eq!(keys.len(), got.peers.len());
        if let Some(k) = &got.private_key {
            prop_assert!(!keys.contains(&k.public_key()));
        }
    }

    /// What `wg setconf` sends (replace_peers, each peer with replace_allowed_ips) reproduces the
    /// configuration exactly, whatever was there before; through the text form.
    #[test]
    fn setconf_reproduces_config(cfg in arb_config(), before in arb_config()) {
        let req = SetRequest {
            private_key: Some(cfg.private_key.clone().map_or(PrivateKeyChange::Clear, PrivateKeyChange::Set)),
            listen_port: Some(cfg.listen_port),
            fwmark: Some(cfg.fwmark),
            replace_peers: true,
            peers: cfg.peers.iter().map(|p| PeerRequest {
                preshared_key: Some(p.preshared_key.clone()),
                endpoint: p.endpoint,
                persistent_keepalive: Some(p.persistent_keepalive),
                replace_allowed_ips: true,
                allowed_ips: p.allowed_ips.iter().copied().map(AllowedIpChange::Add).collect(),
                ..PeerRequest::new(p.public_key)
            }).collect(),
        };
        let text = to_uapi(&req);
        let body = text.strip_prefix("set=1\n").unwrap();
        prop_assert_eq!(set(&before, body).unwrap(), cfg);
    }
}
