//! Helpers for engine-level tests: two data-plane engines in one process over the in-memory TUN
//! and UDP twins of `vpn_dataplane::memory`. No root needed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpn_crypto::{PrivateKey, PublicKey};
use vpn_dataplane::memory::{MemoryHost, MemoryNetwork, MemoryTun};
use vpn_dataplane::{Engine, EngineOptions, InterfaceConfig, IpPrefix, PeerSettings};

/// One side of a test tunnel.
pub struct Node {
    /// The engine.
    pub engine: Engine,
    /// Its TUN twin.
    pub tun: Arc<MemoryTun>,
    /// Its network twin.
    pub host: Arc<MemoryHost>,
    /// Its public key.
    pub public: PublicKey,
    /// Its private key.
    pub private: PrivateKey,
    /// Its address inside the tunnel.
    pub tunnel_ip: IpAddr,
}

impl Node {
    /// Starts a node on `net` at `ip`, with the key made from `seed` and `tunnel_ip` inside.
    pub fn start(net: &Arc<MemoryNetwork>, ip: &str, seed: u8, tunnel_ip: &str) -> Node {
        Self::start_with(net, ip, seed, tunnel_ip, EngineOptions::default())
    }

    /// [`Node::start`] with explicit engine tuning.
    pub fn start_with(net: &Arc<MemoryNetwork>, ip: &str, seed: u8, tunnel_ip: &str, options: EngineOptions) -> Node {
        let host = net.host(ip.parse().expect("ip"));
        let tun = MemoryTun::new(1420);
        let engine = Engine::start_with(tun.clone(), host.clone(), options).expect("engine starts");
        let private = PrivateKey::from_bytes([seed; 32]);
        Node { engine, tun, host, public: private.public_key(), private, tunnel_ip: tunnel_ip.parse().expect("ip") }
    }

    /// Where the other side reaches this node.
    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.host.ip(), self.engine.listen_port())
    }

    /// Configures this node with one peer: `other`, whose allowed IP is its tunnel address.
    pub fn peer_with(&self, other: &Node, endpoint: bool) {
        let mut p = PeerSettings::new(other.public);
        p.allowed_ips = vec![IpPrefix::host(other.tunnel_ip)];
        if endpoint {
            p.endpoint = Some(other.endpoint());
        }
        let cfg = InterfaceConfig {
            private_key: Some(self.private.clone()),
            retiring_private_key: None,
            listen_port: 0,
            fwmark: 0,
            peers: vec![p],
        };
        self.engine.apply(cfg).expect("apply");
    }

    /// Waits for the next packet written to this node's TUN.
    pub fn receive(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.tun.take(timeout)
    }

    /// Packets this node's engine dropped for `reason` (a `DropReason` name).
    pub fn drops(&self, reason: &str) -> u64 {
        self.engine.drop_counters().iter().find(|(n, _)| *n == reason).map_or(0, |(_, v)| *v)
    }
}

/// An IPv4 packet (UDP-like payload) from `src` to `dst` carrying `id`, `len` bytes long.
pub fn ipv4(src: IpAddr, dst: IpAddr, id: u32, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(28));
    ipv4_into(&mut p, src, dst, id, len);
    p
}

/// [`ipv4`], written into `p` (whatever it held is replaced), so that a test can reuse buffers;
/// allocates only when `p` has too little capacity.
pub fn ipv4_into(p: &mut Vec<u8>, src: IpAddr, dst: IpAddr, id: u32, len: usize) {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else { panic!("IPv4 addresses expected") };
    p.clear();
    p.resize(len.max(28), 0);
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    p[24..28].copy_from_slice(&id.to_be_bytes());
}

/// Sends `packet` from `a` and waits until `b` has delivered it, resending every 200 ms while
/// the handshake completes. Returns whether it arrived within `timeout`.
pub fn deliver(a: &Node, b: &Node, packet: &[u8], timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        a.tun.inject(packet.to_vec());
        let wait_until = Instant::now() + Duration::from_millis(200);
        while let Some(got) = b.receive(wait_until.saturating_duration_since(Instant::now())) {
            if got == packet {
                return true;
            }
        }
    }
    false
}
